"""RefLayer configuration: dataclasses with documented defaults and named presets.

`tiny` trains from scratch on a CPU in minutes on 64 px synthetic splits.
`sd3-medium` starts from diffusers-format Stable Diffusion 3 Medium weights in a
local folder, keeps its VAE and text encoders frozen and trains on GPUs in bf16.
Both presets run through the same code; only these values differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class VAEConfig:
    """The image autoencoder (diffusers `AutoencoderKL`).

    With `pretrained_subfolder` set, the VAE is loaded from that subfolder of the
    model's pretrained folder and the structural fields below are ignored.
    """

    # Channels of the encoder and decoder blocks. Each block after the first halves
    # the resolution, so 3 blocks map 64 px to a 16 x 16 latent.
    block_out_channels: tuple[int, ...] = (16, 32, 32)
    # Resnet layers per block.
    layers_per_block: int = 1
    # Channels of the latent.
    latent_channels: int = 4
    # Groups of the group norms; must divide every entry of block_out_channels.
    norm_num_groups: int = 8
    # Self-attention in the middle block (costly at small sizes on a CPU).
    mid_block_add_attention: bool = False
    # Latents are (z - shift_factor) * scaling_factor. The VAE stage of a
    # from-scratch model replaces the scaling factor by 1 / std of its latents.
    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    # Weight of the KL term in the VAE stage (from-scratch models only).
    kl_weight: float = 1e-6
    # Subfolder of the pretrained folder to load from, or None to build from scratch.
    pretrained_subfolder: str | None = None
    # Keep the VAE's weights fixed during the denoiser stage.
    frozen: bool = True


@dataclass
class TextConfig:
    """The text encoder that conditions the transformer.

    `kind="open_clip"`: a small open_clip text tower trained jointly, tokenised by
    open_clip's `SimpleTokenizer` (its BPE vocabulary ships with the package).
    `kind="sd3"`: Stable Diffusion 3's two CLIP encoders and T5 encoder loaded from
    the pretrained folder and frozen (needs the `transformers` package).
    """

    kind: str = "open_clip"
    # Tokens per prompt for the open_clip tower (and the T5 encoder for kind="sd3").
    context_length: int = 16
    # Width, heads and layers of the open_clip tower.
    width: int = 32
    heads: int = 2
    layers: int = 2
    # Size of the pooled text embedding of the open_clip tower.
    embed_dim: int = 32
    # Train the text encoder with the denoiser (kind="open_clip" only).
    trainable: bool = True


@dataclass
class TransformerConfig:
    """The MMDiT denoiser (diffusers `SD3Transformer2DModel`) and its input conv.

    `in_channels` and `out_channels` are the latent channels. The transformer's
    `joint_attention_dim` and `pooled_projection_dim` follow from the text encoder
    (token width and pooled size), so they are not set here.
    """

    sample_size: int = 16
    patch_size: int = 2
    num_layers: int = 3
    attention_head_dim: int = 32
    num_attention_heads: int = 2
    caption_projection_dim: int = 64
    pos_embed_max_size: int = 16
    # Kernel of the convolution that maps [x_t, image latent, canvas latent]
    # (3 * C channels) to the transformer's input channels.
    compress_kernel_size: int = 3
    # Input channels of the transformer; None means C, the latent channels, as a
    # pretrained SD3 transformer expects. The tiny preset keeps all 3 * C channels
    # because squeezing them into C = 4 left its transformer too little of the image.
    in_channels: int | None = None
    # Subfolder of the pretrained folder to load the transformer from, or None.
    pretrained_subfolder: str | None = None


@dataclass
class FlowConfig:
    """Rectified flow matching: x_t = (1 - t) * x_0 + t * noise, t in [0, 1].

    The network predicts the velocity dx_t/dt = noise - x_0. Training draws t from a
    logit-normal distribution, t = sigmoid(n) with n ~ N(mean, std).
    """

    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    # Classifier-free guidance dropout, drawn once per sample: with `drop_all_prob`
    # both the text and the canvas are dropped, otherwise each with its own
    # probability. A dropped text is "", a dropped canvas is the empty canvas.
    drop_all_prob: float = 0.1
    drop_text_prob: float = 0.05
    drop_canvas_prob: float = 0.05
    # Timestep shift of the sampling schedule (FlowMatchEulerDiscreteScheduler).
    shift: float = 1.0


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of `python -m reference_model train`."""

    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # Linear warm-up steps of the learning rate, then constant.
    warmup_steps: int = 100
    # Denoiser-stage steps (the alpha and visibility decoders train alongside).
    steps: int = 2500
    # VAE-stage steps; ignored when the VAE is pretrained.
    vae_steps: int = 300
    # Examples per VAE-stage step; each gives three images (image, canvas, layer RGB).
    vae_batch_size: int = 8
    vae_learning_rate: float = 2e-3
    # Weight of the alpha decoder's binary cross-entropy in the denoiser stage.
    alpha_loss_weight: float = 1.0
    # Examples per step the alpha decoder trains on (the first of each batch); 0 means all.
    alpha_batch_size: int = 4
    # Weight of the visibility decoder's binary cross-entropy in the denoiser stage;
    # it trains on every background example of a batch.
    visibility_loss_weight: float = 1.0
    # Encode every training example once at the start of the denoiser stage and keep
    # the latents in memory (the VAE is frozen there). Meant for small splits.
    cache_latents: bool = True
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    # Steps between checkpoints, and checkpoints kept on disk.
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    # "no", "fp16" or "bf16", passed to accelerate.
    mixed_precision: str = "no"
    num_workers: int = 0
    seed: int = 0


@dataclass
class SampleConfig:
    """Defaults of `python -m reference_model predict`."""

    steps: int = 20
    guidance_scale: float = 2.0


@dataclass
class ModelConfig:
    """A full RefLayer configuration; `to_dict` is what checkpoints store as JSON."""

    preset: str = "tiny"
    # Side of the square the image, canvas and layer are resized to, in pixels.
    resolution: int = 64
    # Local diffusers-format folder the pretrained parts load from (sd3-medium).
    pretrained: str | None = None
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextConfig = field(default_factory=TextConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build a config from `to_dict` output; unknown keys raise ValueError."""
        sections = {
            "vae": VAEConfig, "text": TextConfig, "transformer": TransformerConfig,
            "flow": FlowConfig, "train": TrainConfig, "sample": SampleConfig,
        }
        values = {}
        for key, value in data.items():
            if key in sections:
                values[key] = _build_section(sections[key], value, key)
            elif key in {f.name for f in dataclasses.fields(cls)}:
                values[key] = value
            else:
                raise ValueError(f"unknown config key {key!r}; expected one of {sorted(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)


def _build_section(section_type: type, values: dict, name: str):
    known = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key {', '.join(unknown)} in config section {name!r}; expected {sorted(known)}")
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return section_type(**converted)


def tiny() -> ModelConfig:
    """64 px, a 16 x 16 x 4 latent, a 3-layer width-64 MMDiT; trains on a CPU."""
    return ModelConfig(preset="tiny", transformer=TransformerConfig(in_channels=12))


def sd3_medium(pretrained: str | None = None) -> ModelConfig:
    """1024 px on Stable Diffusion 3 Medium (diffusers layout in `pretrained`).

    The transformer values are those of stabilityai/stable-diffusion-3-medium-diffusers
    (transformer/config.json); its VAE has 16 latent channels, scaling factor 1.5305
    and shift factor 0.0609.
    """
    return ModelConfig(
        preset="sd3-medium",
        resolution=1024,
        pretrained=pretrained,
        vae=VAEConfig(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=16,
            norm_num_groups=32,
            mid_block_add_attention=True,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            pretrained_subfolder="vae",
            frozen=True,
        ),
        text=TextConfig(kind="sd3", context_length=77, trainable=False),
        transformer=TransformerConfig(
            sample_size=128,
            patch_size=2,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            caption_projection_dim=1536,
            pos_embed_max_size=192,
            compress_kernel_size=3,
            pretrained_subfolder="transformer",
        ),
        flow=FlowConfig(shift=3.0),
        train=TrainConfig(
            batch_size=4,
            learning_rate=1e-5,
            weight_decay=1e-2,
            warmup_steps=500,
            steps=20000,
            vae_steps=0,
            alpha_batch_size=0,
            cache_latents=False,
            ema_decay=0.9999,
            checkpoint_every=1000,
            log_every=50,
            mixed_precision="bf16",
            num_workers=4,
        ),
        sample=SampleConfig(steps=28, guidance_scale=5.0),
    )


PRESETS = {"tiny": tiny, "sd3-medium": sd3_medium}


def preset(name: str, pretrained: str | None = None) -> ModelConfig:
    """Build the named preset; `pretrained` sets the folder the pretrained parts load from."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[name]()
    if pretrained is not None:
        config.pretrained = pretrained
    return config
