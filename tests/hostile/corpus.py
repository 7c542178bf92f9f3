"""A corpus of hostile and malformed submission zips, each with its expected verdict.

`build_corpus(folder)` writes a split of three 16x12 samples (`s0`, `s1`, `s2`) to
`folder/split` and one zip per case to `folder/cases/<name>.zip`, and returns the
cases. Each case states the verdict, the problem codes in report order and the
exact text of the first problem (`str(Problem)`), as a researcher would read it.
Tests of the CLI, the library and the REST API iterate the same list.

Most cases pass the default `ArchiveLimits`; a few lower one limit so the files stay
tiny. The whole corpus takes about 420 KB and builds in about a second.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from evaluator.archive import DEFAULT_LIMITS, ArchiveLimits
from tests.evaluator.zips import make_split
from tests.hostile import cases_archive, cases_images, cases_layout, cases_names
from tests.hostile.drafts import HEIGHT, SAMPLE_IDS, WIDTH, Context

SPLIT_FOLDER = "split"
CASES_FOLDER = "cases"

_BUILDERS = [*cases_archive.BUILDERS, *cases_names.BUILDERS, *cases_images.BUILDERS,
             *cases_layout.BUILDERS]


@dataclass(frozen=True)
class Case:
    """One submission zip and the report that validating it against the corpus split gives."""

    name: str
    zip_path: Path
    valid: bool
    # Problem codes in the order of the report; empty when valid.
    codes: tuple[str, ...]
    # `str()` of the first problem: "<file>: <message> (expected ..., found ...). <hint>".
    message: str
    limits: ArchiveLimits = DEFAULT_LIMITS
    max_candidates: int = 8
    # `report.summary` of a valid case.
    summary: dict = field(default_factory=dict)
    # Member names that point outside the archive; nothing may appear at these paths.
    outside_names: tuple[str, ...] = ()
    # A known defect of the evaluator that this case shows; empty when there is none.
    bug: str = ""


def build_corpus(folder: str | Path) -> list[Case]:
    """Write the split and every case zip under `folder`; return the cases in a fixed order."""
    folder = Path(folder)
    split = make_split(folder / SPLIT_FOLDER, SAMPLE_IDS, WIDTH, HEIGHT)
    (folder / CASES_FOLDER).mkdir(parents=True, exist_ok=True)
    cases = []
    with split:
        for builder in _BUILDERS:
            name = builder.__name__
            zip_path = folder / CASES_FOLDER / f"{name}.zip"
            draft = builder(Context(split, zip_path.name))
            zip_path.write_bytes(draft.content)
            values = {item.name: getattr(draft, item.name) for item in dataclasses.fields(draft)
                      if item.name != "content"}
            cases.append(Case(name=name, zip_path=zip_path, valid=not draft.codes, **values))
    return cases


def split_path(folder: str | Path) -> Path:
    """Return the split folder that `build_corpus(folder)` writes."""
    return Path(folder) / SPLIT_FOLDER


def case_names() -> list[str]:
    """Return the names of the cases in corpus order, without building anything."""
    return [builder.__name__ for builder in _BUILDERS]

