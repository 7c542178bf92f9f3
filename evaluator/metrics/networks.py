"""The metric networks, built from the weights folder without touching the network.

- LPIPS: AlexNet trunk from `lpips/alexnet-owt-7be5be79.pth`, v0.1 linear layers from
  the `lpips` package. Input (N, 3, H, W) in [-1, 1]; output (N,) distances.
- CLIP: the open_clip image tower of `config.clip`. Input (N, 3, H, W) in [0, 1]; it is
  resized to the tower's input size with antialiased bicubic filtering, no crop, and
  normalised with the model's mean and std. Output (N, D) L2-normalised embeddings.
- FID Inception: pytorch-fid's port of the TensorFlow Inception-v3 (the blocks
  `FIDInceptionA/C/E_1/E_2`), rebuilt here so the weights come from the local file.
  Input (N, 3, H, W) in [0, 1]; it is resized bilinearly (no antialias, as pytorch-fid
  does) to `inception.input_size` (default 299), scaled to [-1, 1], and the block that
  gives `inception.dims` features is average-pooled to (N, dims).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
import zipfile
from pathlib import Path

import lpips
import open_clip
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
from torch import nn

from evaluator.config import BenchmarkConfig
from evaluator.weights import (
    ALEXNET,
    INCEPTION,
    STAND_IN_SEED,
    WeightsError,
    clip_file_name,
    fetch_command,
    require_file,
    write_manifest,
)

logger = logging.getLogger(__name__)

# LPIPS's AlexNet slices: torchvision `features` index -> slice number.
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
_LPIPS_LINEAR_DIR = Path(lpips.__file__).parent / "weights"
# pytorch-fid's feature sizes and the block whose output gives them.
INCEPTION_BLOCK_BY_DIMS = {64: 0, 192: 1, 768: 2, 2048: 3}


def _offline() -> None:
    # open_clip and torchvision consult the Hugging Face hub only when asked to download;
    # this makes any accidental attempt fail instead of fetching.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


# LPIPS --------------------------------------------------------------------------------


def build_lpips(config: BenchmarkConfig) -> lpips.LPIPS:
    net = config.lpips.get("net", "alex")
    version = str(config.lpips.get("version", "0.1"))
    if net != "alex":
        raise WeightsError(f"lpips.net {net!r} is not supported; use 'alex'")
    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated `pretrained=False`; the trunk is loaded below.
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net="alex", version=version, pnet_rand=True, verbose=False)
    linear_path = _LPIPS_LINEAR_DIR / f"v{version}" / "alex.pth"
    if not linear_path.is_file():
        raise WeightsError(f"LPIPS linear layers {linear_path} not found; reinstall the lpips package")
    linear = torch.load(linear_path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(linear, strict=False)
    # `lins.*` names the same parameters as `lin0..lin4`; the trunk is loaded separately.
    missing = [key for key in result.missing_keys if not key.startswith(("net.", "scaling_layer.", "lins."))]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{linear_path} does not fit LPIPS v{version}: missing {missing}, "
                           f"unexpected {result.unexpected_keys}")
    return model


# Initialisers that module constructors call on parameters. Loading replaces them
# with no-ops, because every parameter is then read from a file.
_INITIALISERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
)


def _starts_as_zip(path: Path) -> bool:
    """Return whether the file begins with a zip local header, as torch's zip format does.

    `zipfile.is_zipfile` looks for the end record near the end of the file instead,
    which a pickle-format file can contain by chance.
    """
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _read_state(path: Path, weights_dir: Path) -> dict:
    """Read a state dict with torch.load, memory-mapped when the file is in the zip format.

    Memory mapping reads only the tensors that are used (LPIPS takes AlexNet's
    convolutions, about 10 of its 233 MB). Files in the older pickle format are
    read whole. A file that cannot be read raises a `WeightsError` naming it.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=_starts_as_zip(path))
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError and more
        raise _unreadable(path, weights_dir, error) from None


def _unreadable(path: Path, weights_dir: Path, error: Exception) -> WeightsError:
    return WeightsError(
        f"weights file {path} could not be read ({type(error).__name__}: {error}); check the folder "
        f"with `python -m evaluator weights check --dir {weights_dir}` and replace the file with "
        f"`{fetch_command(weights_dir)}`"
    )


def _unchanged(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def _without_random_init():
    """Skip `torch.nn.init`'s random initialisation while networks are built for loading.

    Random values for the full-size networks take seconds on a CPU and are all
    overwritten by the strict loads that follow. Buffers that constructors compute
    (normalisation constants) do not go through these functions and stay as built.
    Not thread-safe: it swaps module attributes of `torch.nn.init`.
    """
    saved = {name: getattr(nn.init, name) for name in _INITIALISERS}
    for name in _INITIALISERS:
        setattr(nn.init, name, _unchanged)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def load_lpips(weights_dir: Path, config: BenchmarkConfig) -> lpips.LPIPS:
    """LPIPS with the AlexNet trunk read from the weights folder (strict)."""
    path = require_file(weights_dir, ALEXNET.path)
    with _without_random_init():
        model = build_lpips(config)
    state = _read_state(path, weights_dir)
    trunk = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and int(parts[1]) in _ALEX_SLICES:
            trunk[f"slice{_ALEX_SLICES[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    try:
        model.net.load_state_dict(trunk, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{path} is not a torchvision AlexNet state dict: {error}") from None
    # Channels-last AlexNet ran about 15% faster on a 2-core CPU at 64 px; values agree to float rounding.
    model.net.to(memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)


# CLIP ---------------------------------------------------------------------------------


class ClipEmbedder(nn.Module):
    """The CLIP image tower with its resizing and normalisation; see the module docstring."""

    def __init__(self, visual: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.visual = visual
        size = visual.image_size
        self.image_size = tuple(size) if isinstance(size, tuple | list) else (size, size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=self.image_size, mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1) - self.mean) / self.std
        return F.normalize(self.visual(x).float(), dim=-1)


def _clip_quick_gelu(clip: dict) -> bool:
    if "quick_gelu" in clip:
        return bool(clip["quick_gelu"])
    tag = open_clip.get_pretrained_cfg(clip["model"], clip["pretrained"])
    return bool(tag.get("quick_gelu", False))


def _clip_normalisation(clip: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    tag = {} if "model_config" in clip else open_clip.get_pretrained_cfg(clip["model"], clip["pretrained"])
    mean = clip.get("mean", tag.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = clip.get("std", tag.get("std", open_clip.OPENAI_DATASET_STD))
    return tuple(mean), tuple(std)


class _DropRandomInitWarning(logging.Filter):
    """A logging filter that drops open_clip's warning that a model it built has random weights."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded for model")


def build_clip(config: BenchmarkConfig) -> nn.Module:
    """Build the whole open_clip model of `config.clip`, randomly initialised."""
    _offline()
    clip = config.clip
    if "model_config" in clip:
        model_config = copy.deepcopy(clip["model_config"])
        model_config.setdefault("quick_gelu", _clip_quick_gelu(clip))
        return open_clip.model.CLIP(**model_config)
    # open_clip warns on the root logger that a model built without its `pretrained`
    # weights is random. `load_clip` reads the weights right after, so the warning
    # would mislead every scoring run.
    quiet = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        return open_clip.create_model(clip["model"], pretrained=None, force_quick_gelu=_clip_quick_gelu(clip))
    finally:
        root.removeFilter(quiet)


def _read_clip_state(path: Path, weights_dir: Path) -> dict:
    """Read a state dict from OpenAI's TorchScript archive or from a plain `torch.save` file."""
    if not _starts_as_zip(path):
        return _read_state(path, weights_dir)
    try:
        with zipfile.ZipFile(path) as archive:
            scripted = any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile) as error:
        raise _unreadable(path, weights_dir, error) from None
    if scripted:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        return state
    return _read_state(path, weights_dir)


def load_clip(weights_dir: Path, config: BenchmarkConfig) -> ClipEmbedder:
    """Load the CLIP image tower of `config.clip` from the weights folder (strict)."""
    path = require_file(weights_dir, clip_file_name(config))
    with _without_random_init():
        model = build_clip(config)
    try:
        state = _read_clip_state(path, weights_dir)
        # NOTE: the OpenAI archive path follows open_clip's own loader (same key names);
        # it was not run here because the real file cannot be downloaded on this machine.
        model.load_state_dict(state, strict=True)
    except WeightsError:
        raise
    except (RuntimeError, zipfile.BadZipFile) as error:
        raise WeightsError(f"{path} does not fit the CLIP model {config.clip['model']}: {error}") from None
    mean, std = _clip_normalisation(config.clip)
    return ClipEmbedder(model.visual, mean, std).eval().requires_grad_(False)


# FID Inception ------------------------------------------------------------------------


def build_fid_inception_v3() -> nn.Module:
    """torchvision's Inception-v3 with the FID blocks swapped in, randomly initialised."""
    inception = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    inception.Mixed_5b = FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = FIDInceptionE_1(1280)
    inception.Mixed_7c = FIDInceptionE_2(2048)
    return inception


class FidInception(nn.Module):
    """Inception features for FID; see the module docstring for input and output."""

    def __init__(self, inception: nn.Module, dims: int = 2048, input_size: int = 299):
        super().__init__()
        if dims not in INCEPTION_BLOCK_BY_DIMS:
            raise WeightsError(f"inception.dims must be one of {sorted(INCEPTION_BLOCK_BY_DIMS)}, found {dims}")
        if input_size < 75:
            raise WeightsError(f"inception.input_size must be at least 75 pixels, found {input_size}")
        self.dims = dims
        self.input_size = input_size
        blocks = [
            [inception.Conv2d_1a_3x3, inception.Conv2d_2a_3x3, inception.Conv2d_2b_3x3,
             nn.MaxPool2d(kernel_size=3, stride=2)],
            [inception.Conv2d_3b_1x1, inception.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [inception.Mixed_5b, inception.Mixed_5c, inception.Mixed_5d, inception.Mixed_6a,
             inception.Mixed_6b, inception.Mixed_6c, inception.Mixed_6d, inception.Mixed_6e],
            [inception.Mixed_7a, inception.Mixed_7b, inception.Mixed_7c],
        ]
        last = INCEPTION_BLOCK_BY_DIMS[dims]
        self.blocks = nn.Sequential(*[nn.Sequential(*block) for block in blocks[: last + 1]])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        # Channels-last convolutions ran 2.2 times as fast on a 2-core CPU (batch 32, 75 px).
        # `load_inception` stores the weights in the same layout.
        x = self.blocks((2 * x - 1).contiguous(memory_format=torch.channels_last))
        return F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)


def load_inception(weights_dir: Path, config: BenchmarkConfig) -> FidInception:
    """Load the FID Inception from the weights folder (strict), cut at `inception.dims`."""
    path = require_file(weights_dir, INCEPTION.path)
    with _without_random_init():
        inception = build_fid_inception_v3()
    state = _read_state(path, weights_dir)
    try:
        inception.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{path} is not the FID Inception-v3 state dict: {error}") from None
    dims = int(config.inception.get("dims", 2048))
    input_size = int(config.inception.get("input_size", 299))
    model = FidInception(inception, dims, input_size).eval().requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


# Stand-ins ----------------------------------------------------------------------------


def make_test_weights(weights_dir: Path, config: BenchmarkConfig, seed: int = STAND_IN_SEED) -> dict:
    """Write deterministic stand-ins for every file `config` needs, and the manifest.

    Same architectures and file formats as the real files, random initialisation from
    `seed`. Inception convolutions are He-initialised so activations keep their scale
    through the 20-odd layers (PyTorch's default initialisation shrinks them to ~0).
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    alexnet = torchvision.models.alexnet(weights=None)
    _save(alexnet.state_dict(), weights_dir / ALEXNET.path)

    torch.manual_seed(seed)
    _save(build_clip(config).state_dict(), weights_dir / clip_file_name(config))

    torch.manual_seed(seed)
    inception = build_fid_inception_v3()
    for module in inception.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    _save(inception.state_dict(), weights_dir / INCEPTION.path)

    names = [ALEXNET.path, clip_file_name(config), INCEPTION.path]
    source = f"stand-in (random initialisation, seed {seed})"
    logger.info("wrote stand-in weights to %s", weights_dir)
    return write_manifest(weights_dir, names, {name: source for name in names})


def _save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
