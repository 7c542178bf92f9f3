"""Celery tasks: validate a submission, score it in chunks, aggregate, reap stale work.

Tasks take ids, load rows, call the evaluator and write through services. Every
task is safe to run twice, because state changes are conditional updates and
chunk results are upserts. Late acks redeliver a task whose worker died.
Transient errors (database, broker, storage, connection) are retried with
backoff. Any other error fails the evaluation as an infrastructure failure,
unless the submission turns out to be invalid, which fails it as the user's.
"""

from __future__ import annotations

import functools
import logging
import math
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from celery import chord, current_app, shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

import evaluator
from evaluator.archive import DEFAULT_LIMITS, ArchiveLimits
from evaluator.config import load_config
from evaluator.gt_cache import ground_truth_version
from evaluator.problems import format_count
from evaluator.split import Split as SplitPackage
from evaluator.submission import SubmissionArchive, SubmissionError
from leaderboard import services
from leaderboard.celery import REQUEUED_REASON
from leaderboard.log_context import bind_ids, bound_ids
from leaderboard.models import ChunkResult, Evaluation, FailureKind, Split, Submission
from leaderboard.storage import (
    cache_dir,
    ground_truth_storage,
    local_path,
    materialise,
    private_storage,
)

logger = logging.getLogger(__name__)

# Errors worth retrying: the database, the broker, the storage or the network failed briefly.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError
)
if settings.STORAGES["private"]["BACKEND"].startswith("storages.backends.s3"):
    # Imported only in S3 mode, so that embedded-mode processes do not load botocore.
    from botocore.exceptions import ConnectionError as S3ConnectionError

    TRANSIENT_ERRORS += (S3ConnectionError,)
MAX_RETRIES = 5
RETRY_BACKOFF_MAX_SECONDS = 300
HEARTBEAT_INTERVAL_SECONDS = 30
INFRASTRUCTURE_MESSAGE = "Scoring failed on our side; this upload does not count against your quota."


def retry_countdown(retries: int) -> int:
    """Exponential backoff: 2, 4, 8, ... seconds, at most RETRY_BACKOFF_MAX_SECONDS."""
    return min(RETRY_BACKOFF_MAX_SECONDS, 2 ** (retries + 1))


def evaluation_task(**options):
    """Declare a task on one evaluation with late acks, time limits and retries.

    The wrapped function takes `evaluation_id` first. Transient errors retry with
    backoff up to MAX_RETRIES times. When retries run out, on a soft time limit, or
    on any other error, the evaluation fails as an infrastructure failure and the
    task returns normally, so a chord still completes and its body reads the state.
    """

    def decorate(function):
        @shared_task(
            bind=True,
            name=f"leaderboard.tasks.{function.__name__}",
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=MAX_RETRIES,
            **options,
        )
        @functools.wraps(function)
        def task(self, evaluation_id: int, *args):
            with bound_ids(evaluation_id=evaluation_id):
                return run(self, evaluation_id, *args)

        def run(self, evaluation_id: int, *args):
            try:
                return function(evaluation_id, *args)
            except Retry:
                raise
            except TRANSIENT_ERRORS as error:
                if self.request.retries < MAX_RETRIES:
                    countdown = retry_countdown(self.request.retries)
                    logger.warning(
                        "%s for evaluation %s hit a transient error, retry %d in %d s: %s",
                        self.name, evaluation_id, self.request.retries + 1, countdown, error,
                    )
                    raise self.retry(exc=error, countdown=countdown) from error
                fail_infrastructure(evaluation_id, f"{self.name}: retries exhausted", error)
            except SoftTimeLimitExceeded as error:
                fail_infrastructure(evaluation_id, f"{self.name}: time limit exceeded", error)
            except Exception as error:
                logger.exception("%s for evaluation %s failed", self.name, evaluation_id)
                fail_infrastructure(evaluation_id, f"{self.name}: unexpected error", error)
            return None

        return task

    return decorate


def archive_limits() -> ArchiveLimits:
    """The archive limits from REFLADE_ARCHIVE_LIMITS (field name to value), else the defaults."""
    overrides = getattr(settings, "REFLADE_ARCHIVE_LIMITS", None) or {}
    return replace(DEFAULT_LIMITS, **overrides)


def fail_infrastructure(evaluation_id: int, reason: str, error: BaseException) -> None:
    detail = f"{reason}\n" + "".join(traceback.format_exception(error))
    try:
        services.evaluation_fail(
            evaluation_id=evaluation_id,
            kind=FailureKind.INFRASTRUCTURE,
            user_message=INFRASTRUCTURE_MESSAGE,
            staff_detail=detail,
        )
    except TRANSIENT_ERRORS:
        # The database is down too; the reaper fails or re-queues it later.
        logger.exception("could not record the failure of evaluation %s", evaluation_id)


# Loading the inputs -------------------------------------------------------------------


def ground_truth_path(split: Split) -> Path:
    """Return the split's ground-truth .tar in the local cache, keyed by its version."""
    local = cache_dir() / "ground-truth" / f"{split.ground_truth_version}.tar"
    return materialise(ground_truth_storage(), split.ground_truth_location, local)


def submission_path(submission: Submission) -> Path:
    return local_path(private_storage(), submission.file.name, f"submissions/{submission.sha256}.zip")


def open_split_package(split: Split) -> SplitPackage:
    # Files were checked when the split was imported; the cached tar is those bytes.
    return SplitPackage(ground_truth_path(split), check_files=False)


def benchmark_config(evaluation: Evaluation):
    return load_config(evaluation.submission.split.benchmark.config)


# Validation ---------------------------------------------------------------------------


@evaluation_task(soft_time_limit=600, time_limit=660)
def validate_submission_task(evaluation_id: int) -> None:
    """Validate the zip; reject it with every problem, or queue it for scoring."""
    evaluation = services.evaluation_begin_validation(evaluation_id=evaluation_id)
    if evaluation is None:
        logger.info("validation of evaluation %s skipped: no longer uploaded", evaluation_id)
        return
    submission = evaluation.submission
    bind_ids(submission_id=submission.pk)
    config = benchmark_config(evaluation)

    with open_split_package(submission.split) as split:
        try:
            archive = SubmissionArchive(
                submission_path(submission), split, config.max_candidates, archive_limits(),
                display_name=submission.original_name or None,
            )
        except SubmissionError as error:
            problems = [problem.to_dict() for problem in error.report.problems]
            count = len(problems)
            services.evaluation_reject(
                evaluation_id=evaluation_id,
                problems=problems,
                user_message=f"The submission is invalid: {format_count(count, 'problem')} found. "
                f"Fix {'it' if count == 1 else 'them'} and upload again; this upload does not count "
                "against your quota.",
            )
            return
        with archive:
            candidate_count = archive.n_candidates
            metadata = archive.metadata or {}
        sample_count = len(split)
        # The evaluator's definition, which `python -m evaluator score` writes to report.json
        # too. The split's own ground_truth_version is the SHA-256 of the stored .tar.
        gt_version = ground_truth_version(split)

    chunks_total = max(1, math.ceil(sample_count / config.chunk_size))
    queued = services.evaluation_queue(
        evaluation_id=evaluation_id,
        chunks_total=chunks_total,
        candidate_count=candidate_count,
        metadata=metadata,
        versions={
            "evaluator_version": evaluator.__version__,
            "ground_truth_version": gt_version,
            "config_hash": config.hash,
            "calibration_version": config.calibration.version,
        },
    )
    if queued:
        dispatch_scoring(evaluation_id, chunks_total, attempt=evaluation.attempts)


def chunk_task_id(evaluation_id: int, attempt: int, chunk: int) -> str:
    """Return the task id of a chunk's scoring in the dispatch of `attempt`.

    A fixed id lets a later dispatch mark the chunks an earlier one lost as revoked
    (`revoke_lost_chunks`).
    """
    return f"score-{evaluation_id}-{attempt}-{chunk}"


def dispatch_scoring(
    evaluation_id: int, chunks_total: int, done: set[int] | frozenset[int] = frozenset(), attempt: int = 1
) -> None:
    """Send a chord of the chunks not yet `done` on `gpu`, then aggregation on `default`."""
    header = [
        score_chunk_task.s(evaluation_id, chunk).set(task_id=chunk_task_id(evaluation_id, attempt, chunk))
        for chunk in range(chunks_total) if chunk not in done
    ]
    body = aggregate_evaluation_task.si(evaluation_id)
    if header:
        chord(header)(body)
    else:
        body.delay()
    logger.info("evaluation %s: sent %d of %d chunks", evaluation_id, len(header), chunks_total)


def revoke_lost_chunks(evaluation_id: int, attempt: int, chunks: list[int]) -> None:
    """Record the chunk tasks of an earlier dispatch as revoked in the result backend.

    With a result backend that has no native chords (the embedded database one),
    Celery's `chord_unlock` polls the header's results every second until all are
    ready. A chunk whose message a dead worker took never gets a result, so without
    this the old chord would poll forever, also across worker restarts.
    """
    for chunk in chunks:
        current_app.backend.mark_as_revoked(
            chunk_task_id(evaluation_id, attempt, chunk), reason=REQUEUED_REASON
        )


# Scoring ------------------------------------------------------------------------------


class ScoringContexts:
    """The metric networks of this worker process, kept loaded between chunk tasks.

    Loading the networks once per worker process instead of once per chunk saves
    seconds per chunk. One context is kept, and it is reused while the config,
    weights folder and device stay the same.
    NOTE: weights replaced on disk under the same folder take effect only after a
    worker restart, because the fingerprint is read when the context is made.
    """

    def __init__(self):
        self.key: tuple | None = None
        self.context = None

    def get(self, config):
        from evaluator.pipeline import ScoringContext

        key = (config.hash, config.batch_size, str(settings.REFLADE_WEIGHTS), settings.REFLADE_DEVICE)
        if key != self.key:
            self.context = None  # release the old networks before loading new ones
            self.context = ScoringContext(config, settings.REFLADE_WEIGHTS, settings.REFLADE_DEVICE)
            self.key = key
        return self.context


scoring_contexts = ScoringContexts()


class HeartbeatProgress:
    """A `score_chunk` progress callback that beats the heartbeat between batches.

    Writes at most once per HEARTBEAT_INTERVAL_SECONDS, so a chunk that takes longer
    than the reaper's timeout is not mistaken for a dead one.
    """

    def __init__(self, evaluation_id: int):
        self.evaluation_id = evaluation_id
        self.last = time.monotonic()

    def __call__(self, samples: int) -> None:
        if time.monotonic() - self.last >= HEARTBEAT_INTERVAL_SECONDS:
            services.evaluation_heartbeat(evaluation_id=self.evaluation_id)
            self.last = time.monotonic()


@evaluation_task(
    soft_time_limit=settings.REFLADE_CHUNK_SOFT_TIME_LIMIT, time_limit=settings.REFLADE_CHUNK_TIME_LIMIT
)
def score_chunk_task(evaluation_id: int, chunk: int) -> None:
    """Score samples [chunk * chunk_size, (chunk + 1) * chunk_size) and store the result."""
    from evaluator.pipeline import score_chunk

    evaluation = services.evaluation_begin_chunk(evaluation_id=evaluation_id)
    if evaluation is None:
        logger.info("chunk %d of evaluation %s skipped: not scoring", chunk, evaluation_id)
        return
    if ChunkResult.objects.filter(evaluation_id=evaluation_id, chunk=chunk).exists():
        logger.info("chunk %d of evaluation %s skipped: already stored", chunk, evaluation_id)
        return
    config = benchmark_config(evaluation)
    submission = evaluation.submission
    bind_ids(submission_id=submission.pk)

    with open_split_package(submission.split) as split:
        start = chunk * config.chunk_size
        stop = min(start + config.chunk_size, len(split))
        try:
            # Validation already decoded every image; a chunk checks names and counts
            # only, and read_candidate still checks each image it reads.
            with SubmissionArchive(
                submission_path(submission), split, config.max_candidates, archive_limits(),
                check_images=False, display_name=submission.original_name or None,
            ) as archive:
                result = score_chunk(
                    split, archive, start, stop, config,
                    cache_dir=cache_dir() / "evaluator",
                    workers=settings.REFLADE_LOADER_WORKERS,
                    context=scoring_contexts.get(config),
                    progress=HeartbeatProgress(evaluation_id),
                )
        except SubmissionError as error:
            services.evaluation_fail(
                evaluation_id=evaluation_id,
                kind=FailureKind.USER,
                user_message="A prediction could not be read while scoring; fix it and upload again. "
                "This upload does not count against your quota.",
                staff_detail=str(error),
                problems=[problem.to_dict() for problem in error.report.problems],
            )
            return
    services.chunk_result_store(evaluation_id=evaluation_id, chunk=chunk, payload=result.to_bytes())


@evaluation_task(soft_time_limit=600, time_limit=660)
def aggregate_evaluation_task(evaluation_id: int) -> None:
    """Combine the stored chunk results into the report and per-sample Parquet."""
    from evaluator.pipeline import ChunkResult as ScoredChunk
    from evaluator.pipeline import aggregate

    evaluation = Evaluation.objects.get(pk=evaluation_id)
    stored = ChunkResult.objects.filter(evaluation_id=evaluation_id).count()
    if stored < evaluation.chunks_total:
        # Another dispatch of the same evaluation is still scoring; its chord aggregates.
        logger.info("aggregation of evaluation %s skipped: %d of %d chunks stored",
                    evaluation_id, stored, evaluation.chunks_total)
        return
    evaluation = services.evaluation_begin_aggregation(evaluation_id=evaluation_id)
    if evaluation is None:
        logger.info("aggregation of evaluation %s skipped: not scoring", evaluation_id)
        return
    config = benchmark_config(evaluation)
    payloads = ChunkResult.objects.filter(evaluation_id=evaluation_id).order_by("chunk").values_list("payload", flat=True)
    result = aggregate([ScoredChunk.from_bytes(bytes(payload)) for payload in payloads], config)

    # The stored report is the evaluator's aggregate report with the run's
    # provenance (versions, weights, seconds) and warnings beside it.
    metrics = {**result.report, "provenance": result.provenance, "warnings": result.warnings}
    with tempfile.TemporaryDirectory(prefix="reflade-aggregate-") as scratch:
        samples_path = Path(scratch) / "samples.parquet"
        result.samples.to_parquet(samples_path, index=False)
        services.evaluation_finish(
            evaluation_id=evaluation_id,
            metrics=metrics,
            samples_path=samples_path,
            weights_fingerprint=result.provenance["weights"]["fingerprint"],
            weights_verified=result.weights_verified,
        )


# Reaper -------------------------------------------------------------------------------


@shared_task(name="leaderboard.tasks.reap_stale_evaluations", acks_late=True, soft_time_limit=50, time_limit=55)
def reap_stale_evaluations() -> dict[str, int]:
    """Re-queue evaluations whose heartbeat stopped, failing those out of attempts."""
    counts = {"requeued": 0, "failed": 0, "skipped": 0}
    for evaluation_id, cutoff in services.stale_evaluation_ids():
        outcome = services.evaluation_requeue(evaluation_id=evaluation_id, stale_before=cutoff)
        counts[outcome] += 1
    if counts["requeued"] or counts["failed"]:
        logger.warning("reaper: %(requeued)d re-queued, %(failed)d failed", counts)
    return counts


@shared_task(name="leaderboard.tasks.abort_stale_uploads", acks_late=True, soft_time_limit=300, time_limit=330)
def abort_stale_uploads() -> int:
    """Abort multipart uploads left open past their expiry, freeing the parts S3 keeps."""
    return services.stale_uploads_abort()
