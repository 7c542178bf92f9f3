"""plotly.js, served from the installed `plotly` package so that no page needs a CDN."""

from __future__ import annotations

from importlib import resources

import plotly
from django.http import FileResponse, HttpRequest
from django.views.decorators.http import condition, require_GET

# Browsers may keep the file for a week; the ETag changes with the plotly version.
CACHE_SECONDS = 7 * 24 * 3600


def _plotly_etag(request: HttpRequest) -> str:
    return f"plotly-{plotly.__version__}"


@require_GET
@condition(etag_func=_plotly_etag)
def plotly_js(request: HttpRequest) -> FileResponse:
    path = resources.files("plotly") / "package_data" / "plotly.min.js"
    response = FileResponse(path.open("rb"), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response
