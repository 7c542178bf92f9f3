"""Browser tests reuse the leaderboard fixtures: users, the hosted demo split,
submission zips and the real Celery worker process."""

from tests.leaderboard.conftest import (  # noqa: F401
    celery_worker_process,
    cutout_zip,
    demo_benchmark,
    demo_split,
    other_user,
    staff_user,
    synthetic_split_dir,
    user,
)
