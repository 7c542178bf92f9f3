"""Benchmark configuration: every setting that changes a score, versioned and hashed.

A benchmark config is a JSON file. Each result records the config's `name`,
`version` and `hash` (SHA-256 of its canonical JSON), so two numbers are comparable
exactly when those agree. The default, `reflade-v1`, ships in `evaluator/configs/`.

Fields and defaults (`reflade-v1`):

- `eval_size` (512): every image is resized to eval_size x eval_size before scoring.
- `i_bkgd` ([0.5, 0.5, 0.5]): the neutral background, RGB in [0, 1], that layers
  are composited over wherever their RGB is needed.
- `lpips.net` ("alex"), `lpips.version` ("0.1"): the LPIPS network and linear layers.
- `clip.model` ("ViT-L-14"), `clip.pretrained` ("openai"): the open_clip model whose
  L2-normalised image embedding is f in the completion direction. `clip.model_config`
  optionally gives an open_clip model config inline (tests use a small one).
  `clip.mean` and `clip.std` (default: the pretrained tag's, else OpenAI's) set the
  input normalisation; `clip.quick_gelu` (default: the pretrained tag's) overrides the
  activation.
- `inception.dims` (2048): the FID Inception feature size, one of 64, 192, 768, 2048
  (the output of pytorch-fid's blocks 0 to 3, average-pooled).
- `inception.input_size` (299): the side the FID Inception input is resized to
  (at least 75); test-tiny uses 75 to keep tests fast.
- `k_list` ([1, 2, 4]): the K values of Pass-rate@K reported.
- `max_candidates` (8): the largest n a submission may carry.
- `primary_metric` ("hpa"): the leaderboard's ranking metric; `hpa` is the mean of
  the foreground and background HPA.
- `calibration`: bounds, weights and threshold that turn raw metrics into HPA and
  Pass-rate@K (see `Calibration`).
- `batch_size` (16), `chunk_size` (256): scoring batch and chunk sizes in samples.
- `lpips_cache_mib` (1.0): the ground-truth cache keeps a sample's LPIPS feature
  maps (of g_rgb and g_rgb ⊙ v) when they take at most this many MiB, which spares
  a second submission the ground truth's AlexNet passes. They take 0.24 MiB at
  eval_size 64, 4.9 MiB at 256 and 20.3 MiB at 512; 0 never keeps them.
  `batch_size`, `chunk_size` and `lpips_cache_mib` never change a score, so none
  of them enters the hash.
- `bootstrap.samples` (1000), `bootstrap.seed` (0): the percentile bootstrap that
  gives 95% confidence intervals.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

LAYER_KINDS = ("foreground", "background")
# Metrics that take part in Pass-rate@K quality, and whether higher is better.
QUALITY_METRICS = {"lpips_vis": False, "dir": True, "lpips_comp": False}
HPA_METRICS = {"fid": False, "lpips_vis": False, "dir": True}
# Settings that only change speed, never a score; left out of the hash.
_SPEED_ONLY_FIELDS = ("batch_size", "chunk_size", "lpips_cache_mib")


class ConfigError(ValueError):
    """An invalid benchmark config; the message names the field and the fix."""


@dataclass(frozen=True)
class Bounds:
    """A min-max normalisation range: `lo` maps to 0 and `hi` to 1 (or the reverse)."""

    lo: float
    hi: float

    def normalise(self, value: float, higher_is_better: bool) -> float:
        """Clip to [0, 1]; lower-is-better metrics map `lo` to 1 and `hi` to 0.

        An undefined value (NaN) stays NaN, so callers cannot mistake it for a score.
        """
        if math.isnan(value):
            return math.nan
        span = self.hi - self.lo
        score = (value - self.lo) / span if higher_is_better else (self.hi - value) / span
        return min(1.0, max(0.0, score))


@dataclass(frozen=True)
class Calibration:
    """How raw metrics become HPA and Pass-rate@K.

    `hpa_bounds[layer_kind][metric]` for metric in fid, lpips_vis, dir.
    `pass_bounds[layer_kind][metric]` and `pass_weights[metric]` for metric in
    lpips_vis, dir, lpips_comp; a candidate passes when the weighted sum of the
    normalised metrics reaches `threshold`. `human` tells whether the pass-rate part
    was fitted to human judgments; until then Pass-rate@K is shown as uncalibrated.
    """

    version: str
    hpa_bounds: dict[str, dict[str, Bounds]]
    pass_bounds: dict[str, dict[str, Bounds]]
    pass_weights: dict[str, float]
    threshold: float
    human: bool = False
    source: str = ""

    def hpa(self, layer_kind: str, fid: float, lpips_vis: float, dir: float) -> float:
        """HPA: the mean of the three clipped, normalised terms."""
        bounds = self.hpa_bounds[layer_kind]
        values = {"fid": fid, "lpips_vis": lpips_vis, "dir": dir}
        terms = [bounds[name].normalise(values[name], HPA_METRICS[name]) for name in HPA_METRICS]
        return sum(terms) / len(terms)

    def quality(self, layer_kind: str, values: dict[str, float]) -> float:
        """Pass-rate quality q = sum_j w_j * norm_j(x_j) of one candidate.

        Undefined metrics (NaN) are left out and the remaining weights rescaled to sum
        to 1, as `evaluator.pass_rate` does for whole tables; NaN when none is defined.
        """
        bounds = self.pass_bounds[layer_kind]
        total = weight_sum = 0.0
        for name, higher in QUALITY_METRICS.items():
            term = bounds[name].normalise(float(values[name]), higher)
            if not math.isnan(term):
                total += self.pass_weights[name] * term
                weight_sum += self.pass_weights[name]
        return total / weight_sum if weight_sum > 0 else math.nan

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Calibration:
        def bounds_table(table: dict, metrics: dict, name: str) -> dict[str, dict[str, Bounds]]:
            result = {}
            for kind in LAYER_KINDS:
                if kind not in table:
                    raise ConfigError(f"calibration.{name} has no entry for layer kind {kind!r}; add it")
                result[kind] = {}
                for metric in metrics:
                    entry = table[kind].get(metric)
                    if entry is None:
                        raise ConfigError(
                            f"calibration.{name}.{kind} has no bounds for {metric!r}; add "
                            '{"lo": ..., "hi": ...}'
                        )
                    lo, hi = (entry["lo"], entry["hi"]) if isinstance(entry, dict) else entry
                    if not hi > lo:
                        raise ConfigError(
                            f"calibration.{name}.{kind}.{metric}: hi must exceed lo, found lo={lo}, hi={hi}"
                        )
                    result[kind][metric] = Bounds(float(lo), float(hi))
            return result

        try:
            weights = {name: float(obj["pass_weights"][name]) for name in QUALITY_METRICS}
            return cls(
                version=str(obj["version"]),
                hpa_bounds=bounds_table(obj["hpa_bounds"], HPA_METRICS, "hpa_bounds"),
                pass_bounds=bounds_table(obj["pass_bounds"], QUALITY_METRICS, "pass_bounds"),
                pass_weights=weights,
                threshold=float(obj["threshold"]),
                human=bool(obj.get("human", False)),
                source=str(obj.get("source", "")),
            )
        except KeyError as error:
            raise ConfigError(f"calibration is missing the field {error.args[0]!r}; add it") from None


@dataclass(frozen=True)
class BenchmarkConfig:
    """The scoring settings of one benchmark version; see the module docstring."""

    name: str
    version: str
    eval_size: int = 512
    i_bkgd: tuple[float, float, float] = (0.5, 0.5, 0.5)
    lpips: dict = field(default_factory=lambda: {"net": "alex", "version": "0.1"})
    clip: dict = field(default_factory=lambda: {"model": "ViT-L-14", "pretrained": "openai"})
    inception: dict = field(default_factory=lambda: {"dims": 2048})
    k_list: tuple[int, ...] = (1, 2, 4)
    max_candidates: int = 8
    primary_metric: str = "hpa"
    calibration: Calibration | None = None
    batch_size: int = 16
    chunk_size: int = 256
    lpips_cache_mib: float = 1.0
    bootstrap: dict = field(default_factory=lambda: {"samples": 1000, "seed": 0})

    def to_json(self) -> dict:
        obj = asdict(self)
        obj["i_bkgd"] = list(self.i_bkgd)
        obj["k_list"] = list(self.k_list)
        return obj

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of every field that can change a score."""
        obj = self.to_json()
        for name in _SPEED_ONLY_FIELDS:
            obj.pop(name)
        canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def with_calibration(self, calibration: Calibration) -> BenchmarkConfig:
        obj = self.to_json()
        obj["calibration"] = calibration.to_json()
        return config_from_json(obj)

    @classmethod
    def from_json(cls, obj: dict) -> BenchmarkConfig:
        return config_from_json(obj)


def config_from_json(obj: dict) -> BenchmarkConfig:
    """Build a config from its JSON object, checking each field."""
    obj = copy.deepcopy(obj)
    known = set(BenchmarkConfig.__dataclass_fields__)
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ConfigError(f"unknown config field {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
    for name in ("name", "version", "calibration"):
        if name not in obj:
            raise ConfigError(f"config is missing the field {name!r}; add it")
    eval_size = obj.get("eval_size", 512)
    if not isinstance(eval_size, int) or not 16 <= eval_size <= 4096:
        raise ConfigError(f"eval_size must be an integer in 16..4096, found {eval_size!r}")
    i_bkgd = tuple(float(v) for v in obj.get("i_bkgd", (0.5, 0.5, 0.5)))
    if len(i_bkgd) != 3 or not all(0 <= v <= 1 for v in i_bkgd):
        raise ConfigError(f"i_bkgd must be three numbers in [0, 1], found {obj.get('i_bkgd')!r}")
    max_candidates = obj.get("max_candidates", 8)
    k_list = tuple(int(k) for k in obj.get("k_list", (1, 2, 4)))
    if not k_list or any(k < 1 or k > max_candidates for k in k_list):
        raise ConfigError(f"k_list values must lie in 1..max_candidates ({max_candidates}), found {list(k_list)}")
    lpips_cache_mib = obj.get("lpips_cache_mib", 1.0)
    if isinstance(lpips_cache_mib, bool) or not isinstance(lpips_cache_mib, int | float) or not (
        math.isfinite(lpips_cache_mib) and lpips_cache_mib >= 0
    ):
        raise ConfigError(f"lpips_cache_mib must be a number of MiB >= 0 (0 turns the LPIPS feature cache off), "
                          f"found {lpips_cache_mib!r}")
    obj["i_bkgd"] = i_bkgd
    obj["k_list"] = k_list
    obj["calibration"] = Calibration.from_json(obj["calibration"])
    return BenchmarkConfig(**obj)


DEFAULT_CONFIG_NAME = "reflade-v1"


def load_config(source: str | Path | dict | None = None) -> BenchmarkConfig:
    """Load a config from a dict, a JSON file path, or the name of a shipped config.

    None loads the default, `reflade-v1`.
    """
    if isinstance(source, dict):
        return config_from_json(source)
    if source is None:
        source = DEFAULT_CONFIG_NAME
    path = Path(source)
    if path.suffix != ".json":
        shipped = resources.files("evaluator") / "configs" / f"{source}.json"
        if not shipped.is_file():
            names = sorted(p.name[:-5] for p in (resources.files("evaluator") / "configs").iterdir())
            raise ConfigError(f"no shipped config named {source!r}; choose one of {', '.join(names)} or give a .json path")
        return config_from_json(json.loads(shipped.read_text()))
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; give an existing .json path")
    try:
        return config_from_json(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
