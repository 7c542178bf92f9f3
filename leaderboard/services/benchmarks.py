"""Writes on benchmarks and splits: creating a benchmark and importing a split."""

from __future__ import annotations

import logging
import tarfile
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from evaluator.config import BenchmarkConfig, load_config
from evaluator.split import Split as SplitPackage
from evaluator.split import SplitError, export_public
from leaderboard.models import Benchmark, Split
from leaderboard.services.errors import ServiceError
from leaderboard.storage import ground_truth_storage, public_storage, sha256_file

logger = logging.getLogger(__name__)


def benchmark_create(
    *,
    slug: str,
    name: str,
    description: str,
    config: BenchmarkConfig | dict | str | Path,
    quota_limit: int | None = None,
    quota_window_hours: int | None = None,
    is_public: bool = True,
) -> Benchmark:
    """Create a benchmark scored with `config` (a BenchmarkConfig, its JSON, a shipped name or a path)."""
    if not isinstance(config, BenchmarkConfig):
        config = load_config(config)
    if Benchmark.objects.filter(slug=slug).exists():
        raise ServiceError("benchmark_exists", f"A benchmark with the slug {slug!r} exists; choose another slug.", 409)
    benchmark = Benchmark.objects.create(
        slug=slug,
        name=name,
        description=description,
        config=config.to_json(),
        config_name=config.name,
        config_version=config.version,
        config_hash=config.hash,
        calibration_version=config.calibration.version if config.calibration else "",
        quota_limit=settings.REFLADE_QUOTA_LIMIT if quota_limit is None else quota_limit,
        quota_window_hours=settings.REFLADE_QUOTA_WINDOW_HOURS if quota_window_hours is None else quota_window_hours,
        is_public=is_public,
    )
    logger.info("benchmark %s created with config %s %s (%s)", slug, config.name, config.version, config.hash[:12])
    return benchmark


def write_folder_tar(folder: Path, out: Path) -> Path:
    """Tar a split folder reproducibly: sorted names, no owners, zero times.

    The same folder always gives the same bytes, so the tar's SHA-256 names the data.
    """
    with tarfile.open(out, "w") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return out


def split_import(*, benchmark: Benchmark, name: str, path: str | Path, visibility: str = Split.VISIBILITY_PUBLIC) -> Split:
    """Import a split package (folder or .tar with ground truth) into a benchmark.

    The ground truth goes to private storage under its SHA-256; the public inputs
    package is exported and stored in the default storage. Importing a name again
    replaces the split's data; earlier evaluations keep the ground-truth version
    they were scored against.
    """
    if visibility not in dict(Split.VISIBILITY_CHOICES):
        raise ServiceError(
            "invalid_visibility",
            f"Split visibility {visibility!r} is not one of {', '.join(dict(Split.VISIBILITY_CHOICES))}.",
        )
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="reflade-import-") as scratch:
        scratch_dir = Path(scratch)
        ground_truth = path if path.is_file() else write_folder_tar(path, scratch_dir / "ground-truth.tar")
        package = open_ground_truth(ground_truth, path)
        try:
            version = sha256_file(ground_truth)
            public_tar = export_public(package, scratch_dir / f"{benchmark.slug}-{name}.tar")
            sample_count = len(package)
        finally:
            package.close()

        location = f"ground-truth/{benchmark.slug}/{name}/{version}.tar"
        storage = ground_truth_storage()
        if not storage.exists(location):
            with open(ground_truth, "rb") as handle:
                location = storage.save(location, File(handle))
        with open(public_tar, "rb") as handle:
            public_name = public_storage().save(
                f"splits/{benchmark.slug}/{benchmark.slug}-{name}-{version[:12]}.tar", File(handle)
            )

    with transaction.atomic():
        split, created = Split.objects.update_or_create(
            benchmark=benchmark,
            name=name,
            defaults={
                "public_package": public_name,
                "ground_truth_location": location,
                "ground_truth_version": version,
                "sample_count": sample_count,
                "visibility": visibility,
            },
            create_defaults={
                "public_package": public_name,
                "ground_truth_location": location,
                "ground_truth_version": version,
                "sample_count": sample_count,
                "visibility": visibility,
                "created_at": timezone.now(),
            },
        )
    logger.info(
        "split %s %s: %d samples, ground truth %s, %s",
        split, "imported" if created else "replaced", sample_count, version[:12], visibility,
    )
    return split


def open_ground_truth(tar_path: Path, source: Path) -> SplitPackage:
    """Open and check the split; raise ServiceError unless it is valid and has ground truth."""
    if not source.exists():
        raise ServiceError("split_not_found", f"Split path {source} does not exist; give a folder or a .tar.")
    try:
        package = SplitPackage(tar_path)
    except SplitError as error:
        raise ServiceError("split_invalid", f"The split at {source} is invalid.\n{error}") from None
    if not package.has_ground_truth:
        package.close()
        raise ServiceError(
            "split_without_ground_truth",
            f"The split at {source} has no gt/ folder; import the full split, not its public package.",
        )
    return package

