"""The REST API at /api/v1/ (Django REST Framework).

Settings this package relies on, in `leaderboard/settings.py`:

    INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken",
                       "drf_spectacular", "drf_spectacular_sidecar"]
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.TokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ],
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        "EXCEPTION_HANDLER": "leaderboard.api.errors.api_exception_handler",
    }
    SPECTACULAR_SETTINGS = {
        "TITLE": "RefLade leaderboard API",
        "VERSION": "1",
        "SERVE_INCLUDE_SCHEMA": False,
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
    }
    # Optional: override any of leaderboard.api.throttling.DEFAULT_RATES.
    REFLADE_API_THROTTLE_RATES = {"anon": "120/min", "user": "600/min", "submissions": "30/hour"}

Every view also sets its authentication, throttles and exception handler itself
(`leaderboard.api.views.ApiView`), so the API keeps its error envelope and rate
limits even where the global REST_FRAMEWORK setting differs.
"""
