"""RefLade evaluator: split and submission formats, metrics and the scoring pipeline.

This package never imports Django, so researchers score locally with exactly the
code that the leaderboard's workers run.
"""

__version__ = "0.1.0"
