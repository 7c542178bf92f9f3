"""Checkpoints: safetensors weights with the full config as plain JSON beside them.

A checkpoint is a folder:

    config.json            {"config": ModelConfig.to_dict(), "step": int, "stage": "vae" | "denoiser",
                            "background_examples": int (training runs record it; absent in older ones)}
    model.safetensors      weights of the trained modules, keys "<module>.<parameter>"
    ema.safetensors        EMA weights of the denoiser-stage parameters (optional)
    optimizer.safetensors  optimizer tensors, keys "state.<index>.<name>" (optional)
    optimizer.json         optimizer param_groups and non-tensor state (optional)

Frozen pretrained parts (the sd3-medium VAE and text encoders) are not stored;
they load again from `config.pretrained`. A training run keeps its checkpoints
under `<run>/checkpoints/step_<step>/`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from reference_model.config import ModelConfig
from reference_model.networks import RefLayer

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
MODEL_NAME = "model.safetensors"
EMA_NAME = "ema.safetensors"
OPTIMIZER_NAME = "optimizer.safetensors"
OPTIMIZER_STATE_NAME = "optimizer.json"


def trained_state_dict(model: RefLayer) -> dict[str, torch.Tensor]:
    """Weights of the trained modules, keys prefixed with the module name."""
    state = {}
    for name, module in model.trained_modules().items():
        for key, value in module.state_dict().items():
            state[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    return state


def save_checkpoint(
    directory: str | Path,
    model: RefLayer,
    step: int,
    stage: str,
    ema: dict[str, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    info: dict | None = None,
) -> Path:
    """Write a checkpoint folder; it appears under its final name only when complete.

    `info` adds entries to config.json beside the config, step and stage.
    """
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)

    config = {**(info or {}), "config": model.config.to_dict(), "step": step, "stage": stage}
    (partial / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    save_file(trained_state_dict(model), partial / MODEL_NAME)
    if ema is not None:
        save_file({key: value.detach().to("cpu").contiguous().clone() for key, value in ema.items()}, partial / EMA_NAME)
    if optimizer is not None:
        tensors, plain = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, partial / OPTIMIZER_NAME)
        (partial / OPTIMIZER_STATE_NAME).write_text(json.dumps(plain) + "\n")

    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)
    logger.info("saved checkpoint %s (stage %s, step %d)", directory, stage, step)
    return directory


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                plain_state.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain_state}


def load_optimizer_state(directory: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore an optimizer saved by `save_checkpoint`."""
    directory = Path(directory)
    plain = json.loads((directory / OPTIMIZER_STATE_NAME).read_text())
    state: dict[int, dict] = {}
    for key, value in load_file(directory / OPTIMIZER_NAME).items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in plain["state"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})


def read_checkpoint_info(directory: str | Path) -> dict:
    """Read the checkpoint's config.json; raises FileNotFoundError naming the folder."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; --checkpoint must be a folder written by `python -m reference_model train`")
    return json.loads(path.read_text())


def load_model(directory: str | Path, use_ema: bool = True, map_location: str = "cpu") -> RefLayer:
    """Build RefLayer from a checkpoint folder; EMA weights replace the raw ones when present."""
    directory = Path(directory)
    info = read_checkpoint_info(directory)
    model = RefLayer(ModelConfig.from_dict(info["config"]))
    load_weights(model, load_file(directory / MODEL_NAME, device=map_location))
    if use_ema and (directory / EMA_NAME).is_file():
        load_weights(model, load_file(directory / EMA_NAME, device=map_location), partial=True)
    return model


def load_weights(model: RefLayer, state: dict[str, torch.Tensor], partial: bool = False) -> None:
    """Load prefixed weights into the trained modules; every module must match exactly unless `partial`."""
    modules = model.trained_modules()
    grouped: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
    for key, value in state.items():
        name, _, rest = key.partition(".")
        if name not in grouped:
            raise KeyError(f"checkpoint weight {key!r} belongs to no trained module; expected prefixes {sorted(modules)}")
        grouped[name][rest] = value
    for name, module in modules.items():
        if not grouped[name]:
            if partial:
                continue
            raise ValueError(
                f"the checkpoint has no weights for {name}; it was written by a RefLayer without that module, "
                "so retrain it with `python -m reference_model train`"
            )
        missing, unexpected = module.load_state_dict(grouped[name], strict=False)
        if unexpected:
            raise KeyError(f"checkpoint has unknown weights for {name}: {unexpected[:5]}")
        if missing and not partial:
            raise ValueError(
                f"the checkpoint lacks {len(missing)} of the {name} weights, first {missing[0]!r}; "
                "it was written with another config"
            )


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """List a run's complete checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [path for path in folder.glob("step_*") if path.is_dir() and not path.name.endswith(".partial")]
    return sorted(found, key=lambda path: int(path.name.removeprefix("step_")))


def export_inference(checkpoint: str | Path, out: str | Path) -> Path:
    """Write config.json and model.safetensors holding the EMA weights, for inference only."""
    model = load_model(checkpoint, use_ema=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = read_checkpoint_info(checkpoint)
    (out / CONFIG_NAME).write_text(json.dumps(info, indent=2) + "\n")
    save_file(trained_state_dict(model), out / MODEL_NAME)
    return out
