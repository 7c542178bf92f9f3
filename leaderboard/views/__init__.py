"""Views of the website; the REST API lives in `leaderboard.api`."""
