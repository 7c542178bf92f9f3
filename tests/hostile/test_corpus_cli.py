"""Every hostile case through `python -m evaluator validate`, the library and SubmissionArchive.

Each case must give its expected verdict, problem codes and first message, and exit
with status 0 or 1 without a traceback. No file may appear in the corpus folder, nor
at any path that an escaping member name points to. Cases that show a known defect
of the evaluator are marked xfail(strict=True) while they run, with the defect as the
reason, so they start failing the day the defect is fixed.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evaluator.archive import DEFAULT_LIMITS, ArchiveLimits
from evaluator.cli import main
from evaluator.commands import validate
from evaluator.problems import Problem, Report
from evaluator.split import Split
from evaluator.submission import SubmissionArchive, SubmissionError, validate_submission
from tests.hostile.corpus import CASES_FOLDER, Case, build_corpus, case_names, split_path

REPOSITORY = Path(__file__).resolve().parents[2]
# Cases run through a real `python -m evaluator` process as well as in-process.
SUBPROCESS_CASES = ("zip_slip_parent", "absolute_unix_path", "ratio_bomb", "png_bomb_header",
                    "encrypted_zipcrypto", "truncated_half", "wrapping_folder_accepted")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The built corpus and the folders that the tests watch."""

    root: Path  # everything the tests create lives under this folder
    workdir: Path  # the working directory of every validation
    cases: dict[str, Case]

    @property
    def split(self) -> Path:
        return split_path(self.root)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("hostile")
    cases = build_corpus(root)
    workdir = root / "work"
    workdir.mkdir()
    return Corpus(root, workdir, {case.name: case for case in cases})


def _case(corpus: Corpus, name: str, request: pytest.FixtureRequest | None = None) -> Case:
    case = corpus.cases[name]
    if case.bug and request is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.bug))
    return case


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))}


def _outside_paths(corpus: Corpus, case: Case) -> list[Path]:
    """Where an extractor that trusts the member names would write the case's escaping members."""
    bases = (corpus.workdir, corpus.root / CASES_FOLDER, corpus.split, REPOSITORY, Path("/"))
    return [base / name for name in case.outside_names for base in bases]


def _limit_arguments(limits: ArchiveLimits) -> list[str]:
    """Return `--max-members 4`-style options for the limits that differ from the defaults."""
    arguments = []
    for item in dataclasses.fields(limits):
        value = getattr(limits, item.name)
        if value != getattr(DEFAULT_LIMITS, item.name):
            arguments += ["--" + item.name.replace("_", "-"), str(value)]
    return arguments


def _cli_accepts(arguments: list[str]) -> bool:
    parser = argparse.ArgumentParser()
    validate.add_arguments(parser)
    _, unknown = parser.parse_known_args(["--split", "s", "--predictions", "p", *arguments])
    return not unknown


def _cli_arguments(corpus: Corpus, case: Case) -> list[str]:
    return ["validate", "--split", str(corpus.split), "--predictions", str(case.zip_path), "--json",
            "--max-candidates", str(case.max_candidates), *_limit_arguments(case.limits)]


def _check_json_report(output: str, case: Case) -> None:
    report = json.loads(output)
    codes = tuple(problem["code"] for problem in report["problems"])
    assert report["valid"] is case.valid
    assert codes == case.codes
    if case.valid:
        assert report["summary"] == case.summary
    else:
        assert str(Problem(**report["problems"][0])) == case.message


def _check_report(report: Report, case: Case) -> None:
    assert report.valid is case.valid
    assert tuple(problem.code for problem in report.problems) == case.codes
    if case.valid:
        assert report.summary == case.summary
    else:
        assert str(report.problems[0]) == case.message


# The corpus itself -------------------------------------------------------------


def test_corpus_size_and_names(corpus):
    sizes = [case.zip_path.stat().st_size for case in corpus.cases.values()]
    assert len(corpus.cases) >= 40
    assert list(corpus.cases) == case_names()
    assert sum(sizes) < 5 * 1024 * 1024
    assert sum(not case.valid for case in corpus.cases.values()) >= 40


def test_corpus_expectations_consistent(corpus):
    for case in corpus.cases.values():
        assert case.valid == (not case.codes), case.name
        assert bool(case.message) == (not case.valid), case.name
        assert bool(case.summary) == case.valid, case.name


def test_zipcrypto_member_decrypts(corpus):
    # zipfile reads ZipCrypto, so the hand-written encryption is the real one.
    with zipfile.ZipFile(corpus.cases["encrypted_zipcrypto"].zip_path) as archive:
        data = archive.read("s0.png", pwd=b"secret")
        plain = archive.read("s1.png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert plain.startswith(b"\x89PNG\r\n\x1a\n")


def test_data_descriptor_flag_set(corpus):
    with zipfile.ZipFile(corpus.cases["data_descriptors_accepted"].zip_path) as archive:
        flags = [info.flag_bits for info in archive.infolist()]
    assert flags and all(flag & 0x8 for flag in flags)


def test_cp437_name_stored_without_utf8_flag(corpus):
    with zipfile.ZipFile(corpus.cases["name_cp437"].zip_path) as archive:
        info = archive.infolist()[-1]
    assert info.filename == "sé.png"
    assert info.flag_bits & 0x800 == 0


# Command line, in-process ------------------------------------------------------


def _run_cli(corpus: Corpus, case: Case, request: pytest.FixtureRequest, json_output: bool) -> int:
    arguments = _cli_arguments(corpus, case)
    if not _cli_accepts(arguments[1:]):
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="validate has no options for the archive limits"))
    if not json_output:
        arguments.remove("--json")
    return main(arguments)


@pytest.mark.parametrize("name", case_names())
def test_cli_json_report(name, corpus, request, capsys, monkeypatch):
    case = _case(corpus, name, request)
    monkeypatch.chdir(corpus.workdir)

    status = _run_cli(corpus, case, request, json_output=True)

    captured = capsys.readouterr()
    assert status == (0 if case.valid else 1)
    assert "Traceback" not in captured.err
    _check_json_report(captured.out, case)


@pytest.mark.parametrize("name", case_names())
def test_cli_text_output(name, corpus, request, capsys, monkeypatch):
    case = _case(corpus, name, request)
    monkeypatch.chdir(corpus.workdir)

    status = _run_cli(corpus, case, request, json_output=False)

    lines = capsys.readouterr().out.splitlines()
    assert status == (0 if case.valid else 1)
    if case.valid:
        candidates = case.summary["candidates"]
        summary = f"valid: 3 samples, {candidates} candidate{'s' if candidates > 1 else ''} each"
        if "method" in case.summary:
            summary += f" (method: {case.summary['method']})"
        assert lines == [summary]
    else:
        assert lines[0] == f"invalid submission {case.zip_path}"
        assert lines[1] == f"{len(case.codes)} problem{'s' if len(case.codes) != 1 else ''}:"
        assert lines[2] == f"- {case.message}"


# Library -------------------------------------------------------------------------


@pytest.mark.parametrize("name", case_names())
def test_validate_submission_report(name, corpus, request):
    case = _case(corpus, name, request)
    with Split(corpus.split, check_files=False) as split:
        report = validate_submission(case.zip_path, split, case.max_candidates, case.limits)

    _check_report(report, case)


@pytest.mark.parametrize("name", case_names())
def test_submission_archive(name, corpus, request):
    case = _case(corpus, name, request)
    with Split(corpus.split, check_files=False) as split:
        if case.valid:
            with SubmissionArchive(case.zip_path, split, case.max_candidates, case.limits) as archive:
                layers = [archive.read_candidate(sample_id, k)
                          for sample_id in archive.sample_ids for k in range(archive.n_candidates)]
            assert archive.sample_ids == ["s0", "s1", "s2"]
            assert archive.n_candidates == case.summary["candidates"]
            assert len(layers) == 3 * archive.n_candidates
            for layer in layers:
                assert layer.shape == (12, 16, 4)
                assert layer.dtype == np.uint8
            return
        with pytest.raises(SubmissionError) as raised:
            SubmissionArchive(case.zip_path, split, case.max_candidates, case.limits)

    report = raised.value.report
    _check_report(report, case)
    assert str(raised.value) == f"invalid submission\n{report.format()}"


# Nothing written ------------------------------------------------------------------


@pytest.mark.parametrize("name", case_names())
def test_nothing_written(name, corpus, monkeypatch):
    # A crash is reported by the tests above; this one checks only the file system.
    case = corpus.cases[name]
    outside = _outside_paths(corpus, case)
    assert not any(path.exists() for path in outside)
    monkeypatch.chdir(corpus.workdir)
    before = _snapshot(corpus.root)

    with Split(corpus.split, check_files=False) as split:
        try:
            validate_submission(case.zip_path, split, case.max_candidates, case.limits)
            SubmissionArchive(case.zip_path, split, case.max_candidates, case.limits).close()
        except Exception:  # SubmissionError, or a crash that the report tests fail on
            pass

    # NOTE: other processes may write to the repository at the same time, so it is not
    # snapshotted. Only the named escape targets inside it are checked.
    assert _snapshot(corpus.root) == before
    assert [path for path in outside if path.exists()] == []


# Command line, in a real process -------------------------------------------------


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_module_process(name, corpus):
    case = _case(corpus, name)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPOSITORY))
    before = _snapshot(corpus.root)

    result = subprocess.run(
        [sys.executable, "-m", "evaluator", *_cli_arguments(corpus, case)],
        cwd=corpus.workdir, env=env, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == (0 if case.valid else 1)
    assert result.stderr == ""
    _check_json_report(result.stdout, case)
    assert _snapshot(corpus.root) == before
    assert [path for path in _outside_paths(corpus, case) if path.exists()] == []


@pytest.mark.parametrize("name", case_names())
def test_upload_file_object(name, corpus, request):
    # A web upload arrives as a file object named like the uploaded file; the report is the same.
    case = _case(corpus, name, request)
    upload = io.BytesIO(case.zip_path.read_bytes())
    upload.name = case.zip_path.name

    with Split(corpus.split, check_files=False) as split:
        report = validate_submission(upload, split, case.max_candidates, case.limits)

    _check_report(report, case)
