"""Every hostile and malformed zip of the corpus, posted to the REST API with a real worker.

Valid cases are validated and queued for scoring. Invalid ones fail as the user's
fault with the corpus's problem codes and first message, shown to the owner in the
API response. The worker validates all of them without dying or logging a
traceback, and nothing is written anywhere but the expected storage folders.
The worker consumes only the `default` queue: validation runs there, and the
queued scoring chunks of the valid cases are never picked up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings

from evaluator.archive import DEFAULT_LIMITS
from evaluator.problems import Problem
from leaderboard import services
from leaderboard.models import Benchmark, Evaluation
from tests.hostile.corpus import build_corpus, split_path
from tests.leaderboard.conftest import (
    REPOSITORY,
    WorkerProcess,
    config_name_for_tests,
    database_url,
    start_worker,
)
from tests.reliability.conftest import token_client

API = "/api/v1"
FINISH_TIMEOUT = 300
# Folders under the data folder where validating uploads may create files.
# Valid cases are scored too, so their per-sample results appear under private/samples.
EXPECTED_NEW_FOLDERS = ("private/submissions", "private/samples", "cache")
# Folders of the repository that other processes may write meanwhile.
IGNORED_REPOSITORY_PARTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "data",
                            "node_modules", "benchmarks"}

# Other engineers may add source files to the repository while the test runs.
SOURCE_SUFFIXES = {".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".html", ".css", ".js", ".sh"}


def tree(root: Path, ignored: set[str] = frozenset()) -> set[Path]:
    files = set()
    for folder, names, filenames in os.walk(root):
        names[:] = [name for name in names if name not in ignored]
        files.update(Path(folder, name) for name in filenames)
    return files


def start_default_worker(log_path: Path) -> WorkerProcess:
    """A worker on the `default` queue only: it validates; chunks of valid cases wait on `gpu`."""
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict),
           "REFLADE_WEIGHTS": str(settings.REFLADE_WEIGHTS)}
    return start_worker(log_path, env, queues="default", name="hostile")


def wait_for_verdicts(evaluation_ids: list[int], worker: WorkerProcess) -> None:
    deadline = time.monotonic() + FINISH_TIMEOUT
    pending = Evaluation.objects.filter(pk__in=evaluation_ids, state__in=["uploaded", "validating"])
    while pending.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{pending.count()} uploads still not validated; worker log:\n{worker.log()}")
        assert worker.process.poll() is None, f"the worker died:\n{worker.log()}"
        time.sleep(0.5)


def outside_paths(cases, data_dir: Path) -> list[Path]:
    """Where a worker that trusted member names would write the escaping members."""
    bases = (REPOSITORY, data_dir, data_dir / "private", data_dir / "private" / "submissions", Path("/"))
    return [base / name for case in cases for name in case.outside_names for base in bases]


def cases_by_name(cases) -> dict:
    return {case.name: case for case in cases}


def first_message(problems: list[dict]) -> str:
    return str(Problem(**problems[0])) if problems else ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_hostile_corpus_through_api(user, tmp_path_factory, settings):
    settings.REFLADE_API_THROTTLE_RATES = {"submissions": None, "user": None}
    root = tmp_path_factory.mktemp("hostile-api")
    cases = build_corpus(root)
    benchmark = services.benchmark_create(slug="hostile", name="Hostile", description="Corpus.",
                                          config=config_name_for_tests())
    Benchmark.objects.filter(pk=benchmark.pk).update(quota_limit=1000)
    split = services.split_import(benchmark=benchmark, name="val", path=split_path(root), visibility="public")
    data_dir = Path(settings.DATA_DIR)
    worker = start_default_worker(root / "worker.log")
    data_before, repository_before = tree(data_dir), tree(REPOSITORY, IGNORED_REPOSITORY_PARTS)
    outside_before = [path for path in outside_paths(cases, data_dir) if path.exists()]
    # The server has no setting for archive limits, so cases that need lower limits
    # than the defaults cannot give their verdict through it.
    served = [case for case in cases if case.limits == DEFAULT_LIMITS and case.max_candidates == 8]
    assert len(served) >= 100
    api = token_client(user)

    try:
        submitted, rejected = {}, {}
        for case in served:
            with open(case.zip_path, "rb") as handle:
                response = api.post(f"{API}/submissions/", {"split": split.pk, "file": handle,
                                                            "method_name": case.name}, format="multipart")
            if response.status_code == 201:
                submitted[case.name] = response.json()["id"]
            else:
                rejected[case.name] = (response.status_code, response.json())
        wait_for_verdicts(list(Evaluation.objects.filter(submission__in=submitted.values())
                               .values_list("pk", flat=True)), worker)
        responses = {name: api.get(f"{API}/submissions/{pk}/").json() for name, pk in submitted.items()}
        results = {name: response["evaluation"] for name, response in responses.items()}
    finally:
        worker.stop()

    # Django rejects an empty file before any row or file is made, and no other upload is rejected.
    assert rejected == {"empty_zip_file": (400, {"error": {
        "code": "invalid", "message": "The request is invalid; see details for the problem with each field.",
        "details": {"fields": {"file": ["The submitted file is empty."]}}}})}
    assert not cases_by_name(cases)["empty_zip_file"].valid
    wrong = []
    for case in served:
        if case.name in rejected:
            continue
        evaluation = results[case.name]
        problems = evaluation["validation_problems"]
        # Messages about the whole archive name the file as the user uploaded it.
        assert responses[case.name]["original_name"] == case.zip_path.name
        message = first_message(problems)
        got = (evaluation["state"] in ("queued", "scoring", "aggregating", "finished"), tuple(p["code"] for p in problems), message)
        expected = (case.valid, case.codes, case.message)
        if case.valid:
            ok = got[0] and not problems
        else:
            ok = evaluation["state"] == "failed" and evaluation["failure_kind"] == "user" and got == expected
        if ok == bool(case.bug):
            wrong.append((case.name, case.bug or "expected", expected, got, evaluation["state"]))
    assert not wrong, "\n".join(map(repr, wrong))

    log = worker.log()
    assert worker.process.returncode in (0, -15), log
    assert "Traceback" not in log, log
    new_data = {path.relative_to(data_dir) for path in tree(data_dir) - data_before}
    unexpected = [path for path in new_data if not str(path).startswith(EXPECTED_NEW_FOLDERS)]
    assert not unexpected
    assert len([path for path in new_data if str(path).startswith("private/submissions")]) == len(submitted)
    new_in_repository = tree(REPOSITORY, IGNORED_REPOSITORY_PARTS) - repository_before
    assert [path for path in new_in_repository if path.suffix not in SOURCE_SUFFIXES] == []
    assert [path for path in outside_paths(cases, data_dir) if path.exists()] == outside_before
