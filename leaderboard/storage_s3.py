"""The S3 storage class of ground truth, in its own module so that the embedded mode
never imports boto3 (about 35 MiB of resident memory per process)."""

from __future__ import annotations

from storages.backends.s3 import S3Storage

from leaderboard.storage import no_url


class GroundTruthS3Storage(S3Storage):
    """An S3 bucket or prefix for ground truth: no presigned URL is ever made for it."""

    def url(self, name, parameters=None, expire=None, http_method=None) -> str:
        return no_url(name)
