"""The weights folder: the pretrained networks of the metrics, checked by SHA-256.

Scoring never downloads anything. Every network is loaded from a local folder,
given by `--weights DIR` or the environment variable `REFLADE_WEIGHTS` (default
`./weights`), laid out as:

    lpips/alexnet-owt-7be5be79.pth                   torchvision AlexNet ImageNet state dict,
                                                     the trunk of LPIPS
    clip/<model>-<pretrained>.pt                     open_clip model weights: OpenAI's
                                                     TorchScript archive or a plain state dict
    inception/pt_inception-2015-12-05-6726825d.pth   the FID Inception-v3 state dict
                                                     (pytorch-fid's port of the TensorFlow graph)
    manifest.json                                    {"files": {path: {"sha256", "size", "source"}}}

The LPIPS v0.1 linear layers ship inside the `lpips` pip package and are read from
there. `python -m evaluator weights fetch` downloads the real files and checks them.
`weights make-test` writes deterministic stand-ins: random initialisation with a
fixed seed, in the same architectures and file formats. They load through the same
code, but they are not the published files, so results made with them are unverified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from evaluator.config import BenchmarkConfig

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "REFLADE_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "weights"
MANIFEST_NAME = "manifest.json"
STAND_IN_SEED = 0


class WeightsError(RuntimeError):
    """A weights file that is missing, unreadable or does not fit its network."""


@dataclass(frozen=True)
class PublishedFile:
    """A real weights file: where it lives in the folder, its download URL and checksum."""

    path: str
    url: str
    sha256: str
    size: int | None = None


# Published SHA-256 checksums. The AlexNet and Inception file names end in the first
# eight hex digits of their SHA-256 (torchvision and pytorch-fid naming). The OpenAI
# CLIP URL path contains the SHA-256 that OpenAI's own loader checks.
# NOTE: these full checksums come from public code that pins the same files, and they
# agree with the prefixes in the file names. They were not recomputed from a download,
# because the machine this was written on has no internet access.
ALEXNET = PublishedFile(
    path="lpips/alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    size=244_408_911,
)
INCEPTION = PublishedFile(
    path="inception/pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    size=95_628_359,
)
CLIP_FILES = {
    ("ViT-L-14", "openai"): PublishedFile(
        path="clip/ViT-L-14-openai.pt",
        url="https://openaipublic.azureedge.net/clip/models/"
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    ),
}
PUBLISHED_SHA256 = {item.path: item.sha256 for item in (ALEXNET, INCEPTION, *CLIP_FILES.values())}


def resolve_weights_dir(weights_dir: str | Path | None = None) -> Path:
    """Return the weights folder: the argument, else `REFLADE_WEIGHTS`, else `./weights`."""
    if weights_dir is not None:
        return Path(weights_dir)
    return Path(os.environ.get(WEIGHTS_ENV, DEFAULT_WEIGHTS_DIR))


def clip_file_name(config: BenchmarkConfig) -> str:
    """Return the CLIP weights path inside the folder, `clip/<model>-<pretrained>.pt`."""
    return f"clip/{config.clip['model']}-{config.clip['pretrained']}.pt"


def required_files(config: BenchmarkConfig) -> list[str]:
    """Return the paths inside the weights folder that scoring with `config` reads."""
    return [ALEXNET.path, clip_file_name(config), INCEPTION.path]


def fetch_command(weights_dir: Path) -> str:
    return f"python -m evaluator weights fetch --dir {weights_dir}"


def require_file(weights_dir: Path, name: str) -> Path:
    """Return the full path of a weights file, or raise a `WeightsError` naming the fix."""
    path = weights_dir / name
    if not path.is_file():
        raise WeightsError(
            f"weights file {name} not found in {weights_dir}; run "
            f"`{fetch_command(weights_dir)}` on a machine with internet access, or point "
            f"--weights or {WEIGHTS_ENV} at a folder that has it"
        )
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Manifest -----------------------------------------------------------------------


def read_manifest(weights_dir: Path) -> dict:
    path = weights_dir / MANIFEST_NAME
    if not path.is_file():
        raise WeightsError(
            f"{MANIFEST_NAME} not found in {weights_dir}; run `{fetch_command(weights_dir)}`, "
            f"or `python -m evaluator weights check --dir {weights_dir} --write-manifest` "
            "for files copied in by hand"
        )
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise WeightsError(
            f"{path} is not a valid weights manifest ({error}); rewrite it with "
            f"`python -m evaluator weights check --dir {weights_dir} --write-manifest`"
        ) from None
    if not isinstance(files, dict):
        raise WeightsError(f"{path}: 'files' must be an object of path -> sha256 entries")
    return manifest


def write_manifest(weights_dir: Path, names: list[str], sources: dict[str, str]) -> dict:
    """Hash the files and write `manifest.json`; returns the manifest."""
    files = {}
    for name in sorted(names):
        path = require_file(weights_dir, name)
        files[name] = {
            "sha256": sha256_file(path),
            "size": path.stat().st_size,
            "source": sources.get(name, ""),
        }
    manifest = {"files": files}
    temporary = weights_dir / f".{MANIFEST_NAME}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    temporary.replace(weights_dir / MANIFEST_NAME)
    return manifest


def weights_fingerprint(weights_dir: str | Path | None = None) -> tuple[str, bool]:
    """Return (fingerprint, verified) of a weights folder.

    The fingerprint is the SHA-256 over the manifest's `path:sha256` lines, sorted by
    path. `verified` is true when every file matches its published checksum. The
    manifest's hashes are trusted after a size check, so a fingerprint costs no file
    hashing; `weights check` rehashes every file.
    """
    weights_dir = resolve_weights_dir(weights_dir)
    files = read_manifest(weights_dir)["files"]
    digest = hashlib.sha256()
    verified = bool(files)
    for name in sorted(files):
        entry = files[name]
        path = require_file(weights_dir, name)
        if entry.get("size") is not None and path.stat().st_size != entry["size"]:
            raise WeightsError(
                f"weights file {name} in {weights_dir} has {path.stat().st_size} bytes but the "
                f"manifest records {entry['size']}; run `python -m evaluator weights check "
                f"--dir {weights_dir}`"
            )
        digest.update(f"{name}:{entry['sha256']}\n".encode())
        verified = verified and PUBLISHED_SHA256.get(name) == entry["sha256"]
    return digest.hexdigest(), verified


@dataclass(frozen=True)
class FileCheck:
    """One row of `weights check`."""

    name: str
    size: int | None
    sha256: str | None
    verified: bool
    matches_manifest: bool
    note: str
    in_manifest: bool = True


def check_weights(weights_dir: Path, required: list[str] | tuple[str, ...] = ()) -> list[FileCheck]:
    """Hash every file named in the manifest or in `required` and compare with the checksums.

    A file in `required` that the manifest does not list gets a row with
    `in_manifest` False and `matches_manifest` False. Raises `WeightsError` when the
    manifest is missing or invalid.
    """
    files = read_manifest(weights_dir)["files"]
    rows = []
    for name in sorted(set(files) | set(required)):
        in_manifest = name in files
        path = weights_dir / name
        if not path.is_file():
            note = "missing" if in_manifest else "missing; not in the manifest"
            rows.append(FileCheck(name, None, None, False, False, note, in_manifest))
            continue
        sha256 = sha256_file(path)
        published = PUBLISHED_SHA256.get(name)
        if published is None:
            note = "no published checksum"
        elif published == sha256:
            note = "matches the published checksum"
        else:
            note = "differs from the published checksum"
        matches = in_manifest and files[name].get("sha256") == sha256
        if not in_manifest:
            note += "; not in the manifest"
        elif not matches:
            note += "; differs from the manifest"
        rows.append(FileCheck(name, path.stat().st_size, sha256, published == sha256, matches, note,
                              in_manifest))
    return rows


# Fetch ------------------------------------------------------------------------------


def published_files(config: BenchmarkConfig) -> list[PublishedFile]:
    key = (config.clip["model"], config.clip["pretrained"])
    if key not in CLIP_FILES:
        known = ", ".join(f"{model}/{tag}" for model, tag in CLIP_FILES)
        raise WeightsError(
            f"no published download for CLIP {key[0]}/{key[1]}; known: {known}. Place the "
            f"file at {clip_file_name(config)} by hand and run `weights check --write-manifest`"
        )
    return [ALEXNET, CLIP_FILES[key], INCEPTION]


def fetch_weights(weights_dir: Path, config: BenchmarkConfig) -> dict:
    """Download the published files that are missing or wrong, check them, write the manifest."""
    for item in published_files(config):
        target = weights_dir / item.path
        if target.is_file() and sha256_file(target) == item.sha256:
            logger.info("weights file %s is present and verified", item.path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        logger.info("downloading %s to %s", item.url, target)
        urllib.request.urlretrieve(item.url, partial)
        found = sha256_file(partial)
        if found != item.sha256:
            partial.unlink()
            raise WeightsError(
                f"downloaded {item.url} has SHA-256 {found}, expected {item.sha256}; the file "
                "was deleted, so retry, and report the URL if it keeps failing"
            )
        partial.replace(target)
    sources = {item.path: item.url for item in published_files(config)}
    return write_manifest(weights_dir, list(sources), sources)
