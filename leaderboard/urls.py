"""Root URLconf: the site at `/`, the API at `/api/v1/`, the admin and `/healthz`."""

from importlib.util import find_spec

from django.contrib import admin
from django.urls import include, path

from leaderboard.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

# NOTE: the site and the API are included only once their modules exist, so the
# project runs (admin, health check, workers) while they are being written.
if find_spec("leaderboard.api.urls") is not None:
    urlpatterns.append(path("api/v1/", include("leaderboard.api.urls")))
if find_spec("leaderboard.urls_site") is not None:
    urlpatterns.append(path("", include("leaderboard.urls_site")))
