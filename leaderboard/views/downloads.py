"""Downloads of stored files: a presigned redirect in S3 mode, a stream through Django otherwise.

Callers check permissions first. Only the public and private storages are served
here; ground truth has no download at all.
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponse, HttpResponseRedirect

from leaderboard import s3
from leaderboard.storage import is_s3


def storage_download(storage, name: str, *, filename: str, content_type: str) -> HttpResponse:
    """Return a 302 to a short-lived presigned URL on S3, or the file streamed in blocks."""
    if is_s3(storage):
        response = HttpResponseRedirect(s3.presigned_download_url(storage, name, filename))
        # The URL carries credentials that expire soon; nothing should keep the redirect.
        response["Cache-Control"] = "private, no-store"
        return response
    return FileResponse(storage.open(name, "rb"), as_attachment=True, filename=filename, content_type=content_type)
