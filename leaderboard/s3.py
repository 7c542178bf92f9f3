"""S3 operations that django-storages does not offer: presigned downloads and multipart uploads.

Every function takes a django-storages `S3Storage` and a storage name (relative to
the storage's location) or an object key. Presigned URLs are signed for
`REFLADE_S3_PUBLIC_ENDPOINT_URL` when it is set, because browsers and API clients
may reach the object storage at another address than the web process does.
Expiry times come from `REFLADE_S3_URL_EXPIRY`, read when a URL is made.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

READ_BLOCK_BYTES = 1 << 20
LIST_PARTS_PAGE = 1000


@dataclass(frozen=True)
class Part:
    """A part that S3 has stored for a multipart upload."""

    number: int
    size: int
    etag: str


def object_key(storage, name: str) -> str:
    """Return the bucket key of the storage name `name`."""
    location = storage.location.strip("/")
    return posixpath.join(location, name) if location else name


def client(storage):
    """Return the boto3 client of `storage`'s connection."""
    return storage.connection.meta.client


def signing_client(storage):
    """Return a client that signs URLs for the endpoint clients reach (`REFLADE_S3_PUBLIC_ENDPOINT_URL`)."""
    endpoint = settings.REFLADE_S3_PUBLIC_ENDPOINT_URL
    if not endpoint:
        return client(storage)
    import boto3
    from botocore.config import Config

    # Credentials the storage was not given explicitly come from boto3's usual chain (environment, profile).
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=storage.region_name,
        aws_access_key_id=storage.access_key,
        aws_secret_access_key=storage.secret_key,
        aws_session_token=storage.security_token,
        config=Config(signature_version="s3v4", s3={"addressing_style": storage.addressing_style or "auto"}),
    )


def url_expiry() -> int:
    return settings.REFLADE_S3_URL_EXPIRY


def presigned_download_url(storage, name: str, filename: str) -> str:
    """Return a GET URL for `name`, valid for REFLADE_S3_URL_EXPIRY seconds, saved as `filename`."""
    params = {
        "Bucket": storage.bucket_name,
        "Key": object_key(storage, name),
        "ResponseContentDisposition": f'attachment; filename="{filename}"',
    }
    return signing_client(storage).generate_presigned_url("get_object", Params=params, ExpiresIn=url_expiry())


# Multipart uploads ------------------------------------------------------------------------


def multipart_create(storage, key: str) -> str:
    """Start a multipart upload of `key` and return its S3 upload id."""
    reply = client(storage).create_multipart_upload(
        Bucket=storage.bucket_name, Key=key, ContentType="application/zip"
    )
    return reply["UploadId"]


def multipart_part_url(storage, key: str, upload_id: str, part_number: int) -> str:
    """Return a presigned PUT URL for one part, valid for REFLADE_S3_URL_EXPIRY seconds."""
    params = {"Bucket": storage.bucket_name, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
    return signing_client(storage).generate_presigned_url("upload_part", Params=params, ExpiresIn=url_expiry())


def multipart_parts(storage, key: str, upload_id: str) -> list[Part]:
    """Return every part S3 has stored for the upload, in part-number order (ListParts, all pages)."""
    parts: list[Part] = []
    marker = 0
    while True:
        reply = client(storage).list_parts(
            Bucket=storage.bucket_name, Key=key, UploadId=upload_id,
            MaxParts=LIST_PARTS_PAGE, PartNumberMarker=marker,
        )
        for item in reply.get("Parts", []):
            parts.append(Part(number=item["PartNumber"], size=item["Size"], etag=item["ETag"]))
        if not reply.get("IsTruncated"):
            return parts
        marker = reply["NextPartNumberMarker"]


def multipart_complete(storage, key: str, upload_id: str, parts: list[Part]) -> None:
    client(storage).complete_multipart_upload(
        Bucket=storage.bucket_name, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": part.number, "ETag": part.etag} for part in parts]},
    )


def multipart_abort(storage, key: str, upload_id: str) -> None:
    """Abort the upload, freeing its parts; an upload that S3 no longer has is not an error."""
    from botocore.exceptions import ClientError

    try:
        client(storage).abort_multipart_upload(Bucket=storage.bucket_name, Key=key, UploadId=upload_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise
        logger.info("multipart upload %s of %s was already gone when aborted", upload_id, key)


def object_sha256(storage, key: str) -> tuple[str, int]:
    """Return the SHA-256 and size of an object, streamed in 1 MiB blocks, never held whole."""
    body = client(storage).get_object(Bucket=storage.bucket_name, Key=key)["Body"]
    digest = hashlib.sha256()
    size = 0
    try:
        for block in body.iter_chunks(READ_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    finally:
        body.close()
    return digest.hexdigest(), size


def object_delete(storage, key: str) -> None:
    client(storage).delete_object(Bucket=storage.bucket_name, Key=key)
