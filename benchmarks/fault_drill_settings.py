"""Settings of the fault drills: the leaderboard settings with the middleware that
responds 503 while the database is unreachable, placed right after SecurityMiddleware."""

from leaderboard.settings import *  # noqa: F403
from leaderboard.settings import MIDDLEWARE

DATABASE_MIDDLEWARE = "leaderboard.middleware.DatabaseUnavailableMiddleware"
if DATABASE_MIDDLEWARE not in MIDDLEWARE:
    MIDDLEWARE = [MIDDLEWARE[0], DATABASE_MIDDLEWARE, *MIDDLEWARE[1:]]
