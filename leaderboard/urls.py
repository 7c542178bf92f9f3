"""Root URLconf: the site at `/`, the API at `/api/v1/`, the admin and `/healthz`."""

from django.contrib import admin
from django.urls import include, path

from leaderboard.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("leaderboard.api.urls")),
    path("", include("leaderboard.urls_site")),
]
