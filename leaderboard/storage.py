"""Storages of the leaderboard.

`default` contains what anyone may download (public split packages). `private`
contains ground truth, submissions and per-sample results. It has no URL and is
never served, so its files reach a user only through a view that checks permissions.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages


class PrivateFileSystemStorage(FileSystemStorage):
    """A local folder whose files have no URL, so nothing links to them by mistake."""

    def url(self, name: str | None) -> str:
        raise ValueError(f"{name} is in private storage, which has no URL; serve it through a view that checks permissions")


def private_storage() -> Storage:
    """Return the private storage; models take this callable so they do not capture it at import."""
    return storages["private"]


def public_storage() -> Storage:
    return storages["default"]


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
