"""`python manage.py publish_baseline`: the hosted baseline entries of a benchmark.

For every active split of the benchmark, the command predicts the split's public
inputs package and submits the zip as a baseline entry, owned by a staff account
(so no quota applies). `--kind reflayer` (the default) runs RefLayer from a
checkpoint folder; `--kind cutout` writes the prompt cut-out. The submission's
description is a model card, and the zip's metadata.json carries the same facts,
which validation copies into the submission's metadata.

Publishing is idempotent: a split that already has a baseline entry of the same
method and the same checkpoint (the SHA-256 of its model.safetensors) is skipped
with a message, and nothing is submitted for it.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from leaderboard.models import Benchmark, Split, Submission
from leaderboard.services import submission_create
from leaderboard.storage import materialise

logger = logging.getLogger(__name__)

BASELINE_USER = "baseline"
CUTOUT_METHOD = "Prompt cut-out (baseline)"
CUTOUT_CARD = "The input image inside the prompt's region; no completion of hidden parts."
KINDS = ("reflayer", "cutout")
MODEL_FILE = "model.safetensors"
HASH_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class BaselineEntry:
    """A baseline entry: its method, model card, and the function that writes its zip.

    `identity` is a line of the description that only this entry has, so a split
    with a baseline submission whose description contains it already has this entry.
    """

    method_name: str
    description: str
    identity: str
    write_zip: Callable[[Path, Path], Path]


@dataclass(frozen=True)
class Published:
    split: Split
    submission: Submission
    created: bool


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def training_data_note(checkpoint: Path) -> str:
    """Return the first paragraph of the checkpoint's README.md, which states the training data."""
    readme = checkpoint / "README.md"
    if not readme.is_file():
        return "not recorded (the checkpoint has no README.md)"
    paragraphs = [block.strip() for block in readme.read_text().split("\n\n")]
    text = [block for block in paragraphs if block and not block.startswith("#")]
    return " ".join(text[0].split()) if text else "not recorded (README.md is empty)"


def reflayer_entry(checkpoint: str | Path, candidates: int = 1, steps: int | None = None) -> BaselineEntry:
    """Describe the RefLayer baseline of a checkpoint folder; raise CommandError when it is not one."""
    from reference_model.checkpoint import read_checkpoint_info
    from reference_model.predict import predict

    folder = Path(checkpoint)
    weights = folder / MODEL_FILE
    try:
        config = read_checkpoint_info(folder)["config"]
    except FileNotFoundError as error:
        raise CommandError(str(error)) from error
    if not weights.is_file():
        raise CommandError(f"{weights} not found; --checkpoint must hold {MODEL_FILE} beside config.json")
    sha256 = file_sha256(weights)
    steps = steps if steps is not None else config["sample"]["steps"]
    guidance = config["sample"]["guidance_scale"]
    card = {
        "preset": config["preset"],
        "sampling_steps": steps,
        "guidance_scale": guidance,
        "candidates": candidates,
        "training_data": training_data_note(folder),
        "checkpoint_sha256": sha256,
    }
    identity = f"Checkpoint {MODEL_FILE} SHA-256: {sha256}"
    description = (
        f"RefLayer, the reference model: preset {card['preset']}, {steps} sampling steps, "
        f"guidance scale {guidance}, {candidates} candidate(s) per sample (seeds 0 to {candidates - 1}).\n"
        f"Training data: {card['training_data']}\n"
        f"{identity}"
    )

    def write_zip(public_package: Path, out: Path) -> Path:
        return predict(folder, public_package, out, candidates=candidates, steps=steps, metadata={"model_card": card})

    return BaselineEntry(f"RefLayer {card['preset']} (baseline)", description, identity, write_zip)


def cutout_entry() -> BaselineEntry:
    from reference_model.baselines import write_baseline

    def write_zip(public_package: Path, out: Path) -> Path:
        return write_baseline("cutout", public_package, out, metadata={"model_card": {"training_data": "none"}})

    return BaselineEntry(CUTOUT_METHOD, CUTOUT_CARD, CUTOUT_CARD, write_zip)


def baseline_owner(username: str | None = None):
    """Return the staff account that owns baselines: `username`, which must exist, or `baseline`, created if missing."""
    users = get_user_model().objects
    if username is not None:
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"--owner {username}: no such user; create the account first or leave --owner out")
        if not user.is_staff:
            raise CommandError(f"--owner {username} is not staff; baselines are owned by staff accounts, which have no quota")
        return user
    user, created = users.get_or_create(username=BASELINE_USER, defaults={"is_staff": True})
    if created:
        user.set_unusable_password()
        user.save()
        logger.info("created the staff account %s for baseline entries", BASELINE_USER)
    elif not user.is_staff:
        raise CommandError(f"the account {BASELINE_USER} exists but is not staff; make it staff or pass --owner")
    return user


def public_package_path(split: Split, scratch: Path) -> Path:
    """Return the split's public inputs .tar as a local file, copied into `scratch` when storage is not local."""
    storage = split.public_package.storage
    name = split.public_package.name
    try:
        return Path(storage.path(name))
    except NotImplementedError:
        return materialise(storage, name, scratch / f"public-{split.pk}.tar")


def published_submission(split: Split, entry: BaselineEntry) -> Submission | None:
    return (
        Submission.objects.filter(
            split=split, is_baseline=True, method_name=entry.method_name, description__contains=entry.identity
        )
        .order_by("created_at")
        .first()
    )


def publish(split: Split, entry: BaselineEntry, owner, eager: bool = False) -> Published:
    """Submit the entry's zip for the split as a baseline, unless the split already has it.

    `eager` runs the validation and scoring tasks in this process instead of a worker.
    """
    existing = published_submission(split, entry)
    if existing is not None:
        return Published(split, existing, created=False)
    from leaderboard.celery import app

    with tempfile.TemporaryDirectory(prefix="reflade-baseline-") as scratch:
        path = entry.write_zip(public_package_path(split, Path(scratch)), Path(scratch) / "baseline.zip")
        previous = app.conf.task_always_eager
        app.conf.task_always_eager = eager
        try:
            with open(path, "rb") as handle:
                submission = submission_create(
                    user=owner,
                    split=split,
                    uploaded_file=File(handle, name=f"{split.name}-baseline.zip"),
                    method_name=entry.method_name,
                    description=entry.description,
                    is_baseline=True,
                )
        finally:
            app.conf.task_always_eager = previous
    logger.info("published %s on %s as submission %s", entry.method_name, split, submission.pk)
    return Published(split, submission, created=True)


class Command(BaseCommand):
    help = "Predict every active split of a benchmark and submit the predictions as its baseline entry."

    def add_arguments(self, parser):
        parser.add_argument("--benchmark", required=True, help="slug of the benchmark")
        parser.add_argument("--kind", choices=KINDS, default="reflayer", help="reflayer (default) or cutout")
        parser.add_argument("--checkpoint", help="RefLayer checkpoint folder (config.json + model.safetensors); --kind reflayer only")
        parser.add_argument("--candidates", type=int, default=1, help="candidates per sample (default 1)")
        parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's config)")
        parser.add_argument("--owner", default=None, help=f"staff account that owns the entries (default {BASELINE_USER}, created if missing)")

    def handle(self, *args, **options):
        benchmark = Benchmark.objects.filter(slug=options["benchmark"]).first()
        if benchmark is None:
            raise CommandError(f"--benchmark {options['benchmark']}: no such benchmark; create it with import_split")
        entry = self.entry(options)
        splits = list(benchmark.splits.filter(is_active=True).order_by("name"))
        if not splits:
            raise CommandError(f"benchmark {benchmark.slug} has no active split to publish a baseline on")
        owner = baseline_owner(options["owner"])
        for split in splits:
            result = publish(split, entry, owner)
            if result.created:
                self.stdout.write(f"submitted {entry.method_name} on {split} as submission {result.submission.pk}")
            else:
                self.stdout.write(
                    f"skipped {split}: submission {result.submission.pk} already publishes {entry.method_name} "
                    "with this checkpoint; rescore that submission to score it again"
                )

    def entry(self, options) -> BaselineEntry:
        if options["kind"] == "cutout":
            if options["checkpoint"]:
                raise CommandError("--checkpoint is for --kind reflayer; the cut-out needs no checkpoint")
            return cutout_entry()
        if not options["checkpoint"]:
            raise CommandError("--kind reflayer needs --checkpoint, a folder such as reference_model/checkpoints/tiny")
        if options["candidates"] < 1:
            raise CommandError(f"--candidates must be at least 1, got {options['candidates']}")
        return reflayer_entry(options["checkpoint"], options["candidates"], options["steps"])
