"""Structured problems found while reading a split or a submission.

Every check in the evaluator reports a `Problem` instead of raising on the first
error, so a researcher sees all that is wrong with an upload at once. A problem has
a stable `code` (for machines and tests), the `file` it concerns, the `expected` and
`found` values and a `hint` that says how to fix it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# The number of problems printed before the rest are summarised as "and N more".
DEFAULT_REPORT_LIMIT = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, with the fix."""

    code: str
    file: str
    message: str
    expected: str = ""
    found: str = ""
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}: {self.message}"
        if self.expected or self.found:
            text += f" (expected {self.expected or '-'}, found {self.found or '-'})"
        if self.hint:
            text += f". {self.hint}"
        return text

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Report:
    """The outcome of a validation: valid when it contains no problem."""

    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def format(self, limit: int = DEFAULT_REPORT_LIMIT) -> str:
        """Render the report as text, at most `limit` problems and a count of the rest."""
        if self.valid:
            parts = [f"{key}: {value}" for key, value in self.summary.items()]
            return "valid" + (" (" + ", ".join(parts) + ")" if parts else "")
        return format_problems(self.problems, limit)

    def to_json(self) -> str:
        return json.dumps(
            {
                "valid": self.valid,
                "summary": self.summary,
                "problems": [problem.to_dict() for problem in self.problems],
            },
            indent=2,
        )


def format_count(count: int, noun: str, plural: str | None = None) -> str:
    """Return the count with the noun in singular or plural: `1 problem`, `2 problems`.

    `plural` defaults to the noun with an s appended.
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {plural or noun + 's'}"


def format_problems(problems: list[Problem], limit: int = DEFAULT_REPORT_LIMIT) -> str:
    """List problems one per line, cutting the list after `limit` with "and N more"."""
    lines = [f"{format_count(len(problems), 'problem')}:"]
    lines += [f"- {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n".join(lines)
