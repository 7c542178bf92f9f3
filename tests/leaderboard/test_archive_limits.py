"""The server's archive limits come from the REFLADE_ARCHIVE_LIMITS setting."""

import pytest

from evaluator.archive import DEFAULT_LIMITS
from leaderboard.tasks import archive_limits


def test_archive_limits_default(settings):
    settings.REFLADE_ARCHIVE_LIMITS = {}

    assert archive_limits() == DEFAULT_LIMITS


def test_archive_limits_override(settings):
    settings.REFLADE_ARCHIVE_LIMITS = {"max_members": 10, "max_ratio": 50.0}

    limits = archive_limits()

    assert limits.max_members == 10
    assert limits.max_ratio == 50.0
    assert limits.max_pixels == DEFAULT_LIMITS.max_pixels


def test_archive_limits_unknown_field(settings):
    settings.REFLADE_ARCHIVE_LIMITS = {"max_files": 10}

    with pytest.raises(TypeError, match="max_files"):
        archive_limits()
