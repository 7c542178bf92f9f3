"""Storages of the leaderboard.

`default` contains what anyone may download (public split packages). `private`
contains submissions and per-sample results, and `ground_truth` the split's ground
truth. Neither private storage has a public URL, so their files reach a user only
through a view that checks permissions: in S3 mode that view redirects to a
short-lived presigned URL (`leaderboard.s3`). Ground truth never gets a URL at all.
The embedded mode keeps ground truth in the same local folder as `private`.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.signals import setting_changed
from django.utils.functional import LazyObject, empty


class PrivateFileSystemStorage(FileSystemStorage):
    """A local folder whose files have no URL, so nothing links to them by mistake."""

    def url(self, name: str | None) -> str:
        return no_url(name)


def no_url(name: str | None) -> str:
    raise ValueError(f"{name} is in private storage, which has no URL; serve it through a view that checks permissions")


class StorageAlias(LazyObject):
    """The storage configured under one alias of STORAGES, resolved on first use.

    Django calls a FileField's storage callable once, when the model class is made.
    Handing it this proxy instead of the storage itself lets a change of STORAGES
    (tests switching to S3) reach the model fields, as `default_storage` does.
    """

    def __init__(self, alias: str):
        self.__dict__["alias"] = alias
        super().__init__()

    def _setup(self):
        self._wrapped = storages[self.__dict__["alias"]]


PRIVATE_STORAGE = StorageAlias("private")
GROUND_TRUTH_STORAGE = StorageAlias("ground_truth")


def reset_storage_aliases(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        PRIVATE_STORAGE._wrapped = empty
        GROUND_TRUTH_STORAGE._wrapped = empty


setting_changed.connect(reset_storage_aliases)


def private_storage() -> Storage:
    """Return the storage of submissions and per-sample results; model fields take this callable."""
    return PRIVATE_STORAGE


def ground_truth_storage() -> Storage:
    """Return the storage of ground truth, which no view serves and nothing links to."""
    return GROUND_TRUTH_STORAGE


def public_storage() -> Storage:
    return storages["default"]


def is_s3(storage: Storage) -> bool:
    """Return whether `storage` is an S3 bucket (presigned URLs and multipart uploads work).

    An S3 storage exists only once django-storages' S3 module is imported, so the
    check costs the embedded mode no boto3 import.
    """
    module = sys.modules.get("storages.backends.s3")
    return module is not None and isinstance(storage, module.S3Storage)


def submission_upload_to(instance, filename: str) -> str:
    return f"submissions/split-{instance.split_id}/{uuid.uuid4().hex}.zip"


def public_package_upload_to(instance, filename: str) -> str:
    return f"splits/{instance.benchmark.slug}/{filename}"


def samples_upload_to(instance, filename: str) -> str:
    return f"samples/evaluation-{instance.pk}/{filename}"


def cache_dir() -> Path:
    """Return the worker's local cache folder (`REFLADE_CACHE`), creating it on first use."""
    path = Path(settings.REFLADE_CACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialise(storage: Storage, name: str, local: Path) -> Path:
    """Copy `name` from `storage` to the local file `local` unless it is already there.

    The copy goes to a temporary file in the same folder and is renamed into place,
    so a concurrent reader never sees a partial file.
    """
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=local.parent, suffix=".part", delete=False) as out:
        with storage.open(name, "rb") as source:
            shutil.copyfileobj(source, out, length=1 << 20)
    Path(out.name).replace(local)
    return local


def local_path(storage: Storage, name: str, cache_name: str) -> Path:
    """Return a local file with the contents of `name`.

    That is the file itself on a local storage, else a copy in the cache folder under `cache_name`.
    """
    try:
        return Path(storage.path(name))
    except NotImplementedError:
        return materialise(storage, name, cache_dir() / cache_name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
