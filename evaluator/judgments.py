"""Reading human judgments and the per-sample tables they refer to.

Judgments are CSV (`.csv`) or JSON lines (`.jsonl`, `.json`), in one of two forms:

- pass/fail labels: `sample_id`, `candidate`, `passed` (0 or 1), optional `entry`;
- pairwise preferences: `entry_a`, `entry_b`, `winner` (the preferred entry's name,
  or `tie`), optional `sample_id`.

The form follows from the columns: `passed` makes labels, `winner` preferences.
Entries are named by `--samples NAME=PATH`, or by the file's stem when no name is
given; a table that has an `entry` column keeps it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from evaluator.sample_table import check_samples, format_ids

LABEL_COLUMNS = ("sample_id", "candidate", "passed")
PREFERENCE_COLUMNS = ("entry_a", "entry_b", "winner")
TIE = "tie"


class JudgmentError(ValueError):
    """Invalid judgments or sample tables for calibration; the message names the value and the fix."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or JSON lines file into a DataFrame (every column as read)."""
    path = Path(path)
    if not path.is_file():
        raise JudgmentError(f"judgments file {path} not found; give an existing .csv or .jsonl file")
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"sample_id": str, "entry": str, "entry_a": str, "entry_b": str, "winner": str})
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise JudgmentError(f"{path} line {number} is not valid JSON: {error.msg}; write one object per line") from None
        return pd.DataFrame(rows)
    raise JudgmentError(f"judgments file {path} has the suffix {path.suffix!r}; expected .csv, .jsonl or .json")


def load_judgments(path: str | Path) -> tuple[str, pd.DataFrame]:
    """Return ("labels" | "preferences", table), checked."""
    table = read_table(path)
    if "passed" in table.columns:
        return "labels", _check_labels(table, path)
    if "winner" in table.columns:
        return "preferences", _check_preferences(table, path)
    raise JudgmentError(
        f"{path} has the columns {', '.join(map(str, table.columns))}; expected pass/fail labels "
        f"({', '.join(LABEL_COLUMNS)}) or pairwise preferences ({', '.join(PREFERENCE_COLUMNS)})"
    )


def _check_labels(table: pd.DataFrame, path) -> pd.DataFrame:
    missing = [name for name in LABEL_COLUMNS if name not in table.columns]
    if missing:
        raise JudgmentError(f"{path} lacks the label columns {', '.join(missing)}; add them")
    table = table.copy()
    table["sample_id"] = table["sample_id"].astype(str)
    table["candidate"] = pd.to_numeric(table["candidate"], errors="raise").astype("int64")
    invalid = table[~table["passed"].isin([0, 1, True, False])]
    if len(invalid):
        raise JudgmentError(
            f"{path}: passed must be 0 or 1, found {invalid['passed'].iloc[0]!r} for sample "
            f"{invalid['sample_id'].iloc[0]}; write 1 for pass and 0 for fail"
        )
    table["passed"] = table["passed"].astype(int)
    if "entry" in table.columns:
        table["entry"] = table["entry"].astype(str)
    return table


def _check_preferences(table: pd.DataFrame, path) -> pd.DataFrame:
    missing = [name for name in PREFERENCE_COLUMNS if name not in table.columns]
    if missing:
        raise JudgmentError(f"{path} lacks the preference columns {', '.join(missing)}; add them")
    table = table.copy()
    for name in PREFERENCE_COLUMNS:
        table[name] = table[name].astype(str)
    if "sample_id" in table.columns:
        table["sample_id"] = table["sample_id"].where(table["sample_id"].notna(), None)
    same = table[table["entry_a"] == table["entry_b"]]
    if len(same):
        raise JudgmentError(f"{path}: entry_a and entry_b are both {same['entry_a'].iloc[0]!r}; compare two entries")
    invalid = table[(table["winner"] != table["entry_a"]) & (table["winner"] != table["entry_b"]) & (table["winner"] != TIE)]
    if len(invalid):
        row = invalid.iloc[0]
        raise JudgmentError(
            f"{path}: winner {row['winner']!r} is neither {row['entry_a']!r}, {row['entry_b']!r} nor {TIE!r}; "
            "write the preferred entry's name or tie"
        )
    return table


def read_report_hpa(specs: list[str]) -> dict[str, float]:
    """Read the top-level HPA of each `NAME=PATH` report JSON written by scoring."""
    result = {}
    for spec in specs:
        name, separator, location = spec.partition("=")
        if not separator or not name:
            raise JudgmentError(f"--report {spec!r} must be NAME=PATH, NAME being the entry's name in the preferences")
        path = Path(location)
        if not path.is_file():
            raise JudgmentError(f"report file {path} not found; give the report .json of entry {name}")
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("hpa", {}).get("value")
        except (json.JSONDecodeError, AttributeError):
            value = None
        if not isinstance(value, int | float):
            raise JudgmentError(f"report file {path} has no numeric hpa.value; give a report written by scoring")
        result[name] = float(value)
    return result


def load_sample_tables(specs: list[str]) -> pd.DataFrame:
    """Concatenate per-sample Parquet tables, each tagged with its entry name."""
    tables = []
    for spec in specs:
        name, separator, location = spec.partition("=")
        path = Path(location if separator else spec)
        if not path.is_file():
            raise JudgmentError(f"samples file {path} not found; give a per-sample .parquet written by scoring")
        table = pd.read_parquet(path)
        check_samples(table)
        if separator:
            table["entry"] = name
        elif "entry" not in table.columns:
            table["entry"] = path.stem
        tables.append(table)
    combined = pd.concat(tables, ignore_index=True)
    repeated = combined.duplicated(["entry", "sample_id", "candidate"])
    if repeated.any():
        entries = pd.unique(combined.loc[repeated, "entry"])
        raise JudgmentError(f"entries {format_ids(entries)} appear in more than one samples file; name each file NAME=PATH")
    return combined
