"""RefLayer's networks: VAE, alpha and visibility decoders, text encoders and the denoiser.

Tensors in pixel space are (B, 3, R, R) in [-1, 1], R the config's resolution.
Latents are (B, C, R / f, R / f) with f the VAE's downsampling factor and already
normalised: latent = (z - shift_factor) * scaling_factor, z the VAE's latent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from diffusers.models.autoencoders.vae import Decoder
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.tokenizer import SimpleTokenizer
from torch import nn

from reference_model.config import ModelConfig, TextConfig

logger = logging.getLogger(__name__)


def _pretrained_dir(config: ModelConfig, subfolder: str) -> Path:
    if config.pretrained is None:
        raise ValueError(
            f"preset {config.preset!r} loads {subfolder}/ from a pretrained folder, but none was given; "
            "pass --pretrained DIR (a diffusers-format Stable Diffusion 3 folder)"
        )
    path = Path(config.pretrained) / subfolder
    if not path.is_dir():
        raise FileNotFoundError(f"{path} not found; --pretrained must be a diffusers-format folder with {subfolder}/")
    return path


def build_vae(config: ModelConfig) -> AutoencoderKL:
    """Load the VAE from the pretrained folder, or build a new one from the config."""
    vae_config = config.vae
    if vae_config.pretrained_subfolder is not None and config.pretrained is not None:
        return AutoencoderKL.from_pretrained(_pretrained_dir(config, vae_config.pretrained_subfolder))
    blocks = len(vae_config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(vae_config.block_out_channels),
        layers_per_block=vae_config.layers_per_block,
        latent_channels=vae_config.latent_channels,
        norm_num_groups=vae_config.norm_num_groups,
        sample_size=config.resolution,
        scaling_factor=vae_config.scaling_factor,
        shift_factor=vae_config.shift_factor,
        mid_block_add_attention=vae_config.mid_block_add_attention,
    )


def build_map_decoder(vae: AutoencoderKL) -> Decoder:
    """Build a decoder with the VAE decoder's structure and one output channel (logits of a map).

    RefLayer has two: the alpha decoder (layer latent -> alpha) and the visibility
    decoder (image latent -> where the image shows the background). Each starts from
    the VAE decoder's weights wherever the shapes agree, which is everywhere except
    the last convolution.
    """
    vae_cfg = vae.config
    decoder = Decoder(
        in_channels=vae_cfg.latent_channels,
        out_channels=1,
        up_block_types=tuple(vae_cfg.up_block_types),
        block_out_channels=tuple(vae_cfg.block_out_channels),
        layers_per_block=vae_cfg.layers_per_block,
        norm_num_groups=vae_cfg.norm_num_groups,
        act_fn=vae_cfg.act_fn,
        mid_block_add_attention=vae_cfg.get("mid_block_add_attention", True),
    )
    source = vae.decoder.state_dict()
    target = decoder.state_dict()
    copied = {name: value for name, value in source.items() if name in target and target[name].shape == value.shape}
    decoder.load_state_dict(copied, strict=False)
    return decoder


class OpenClipTextEncoder(nn.Module):
    """A small open_clip text tower; returns per-token states and a pooled embedding."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.context_length = config.context_length
        text_cfg = CLIPTextCfg(
            context_length=config.context_length,
            width=config.width,
            heads=config.heads,
            layers=config.layers,
            output_tokens=True,
        )
        self.tower = _build_text_tower(config.embed_dim, text_cfg)
        self.tokenizer = SimpleTokenizer(context_length=config.context_length)
        self.hidden_dim = config.width
        self.pooled_dim = config.embed_dim

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokenizer(texts)}

    def forward(self, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return hidden states (B, L, width) and the pooled embedding (B, embed_dim)."""
        pooled, hidden = self.tower(tokens["tokens"])
        return hidden, pooled


class SD3TextEncoder(nn.Module):
    """Stable Diffusion 3's CLIP-L, CLIP-G and T5-XXL encoders, frozen.

    As in the SD3 pipeline of diffusers: the two CLIP encoders' penultimate hidden
    states are concatenated along channels (768 + 1280), zero-padded to T5's 4096
    and concatenated with the T5 states along the sequence. The pooled embedding is
    the two CLIP projections concatenated (2048).

    NOTE: tested on a folder of tiny random networks in the SD3 layout
    (tests/reference_model/sd3_folder.py), never with the real SD3 Medium weights.
    """

    def __init__(self, pretrained: Path, t5_length: int):
        super().__init__()
        try:
            from transformers import (
                CLIPTextModelWithProjection,
                CLIPTokenizer,
                T5EncoderModel,
                T5TokenizerFast,
            )
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                "the sd3-medium text encoders need the transformers package; install it with "
                "`pip install transformers sentencepiece`"
            ) from error
        self.tokenizers = [
            CLIPTokenizer.from_pretrained(pretrained / "tokenizer"),
            CLIPTokenizer.from_pretrained(pretrained / "tokenizer_2"),
            T5TokenizerFast.from_pretrained(pretrained / "tokenizer_3"),
        ]
        self.clip_l = CLIPTextModelWithProjection.from_pretrained(pretrained / "text_encoder")
        self.clip_g = CLIPTextModelWithProjection.from_pretrained(pretrained / "text_encoder_2")
        self.t5 = T5EncoderModel.from_pretrained(pretrained / "text_encoder_3")
        self.t5_length = t5_length
        self.hidden_dim = self.t5.config.d_model
        self.pooled_dim = self.clip_l.config.projection_dim + self.clip_g.config.projection_dim
        self.requires_grad_(False)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        lengths = (77, 77, self.t5_length)
        ids = [
            tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
            for tokenizer, length in zip(self.tokenizers, lengths, strict=True)
        ]
        return {"clip_l": ids[0], "clip_g": ids[1], "t5": ids[2]}

    def forward(self, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return hidden states (B, 77 + t5_length, 4096) and pooled (B, 2048)."""
        out_l = self.clip_l(tokens["clip_l"], output_hidden_states=True)
        out_g = self.clip_g(tokens["clip_g"], output_hidden_states=True)
        clip_states = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], dim=-1)
        clip_states = nn.functional.pad(clip_states, (0, self.hidden_dim - clip_states.shape[-1]))
        t5_states = self.t5(tokens["t5"])[0]
        hidden = torch.cat([clip_states, t5_states.to(clip_states.dtype)], dim=1)
        pooled = torch.cat([out_l.text_embeds, out_g.text_embeds], dim=-1)
        return hidden, pooled


def build_text_encoder(config: ModelConfig) -> nn.Module:
    if config.text.kind == "open_clip":
        return OpenClipTextEncoder(config.text)
    if config.text.kind == "sd3":
        if config.pretrained is None:
            raise ValueError("text kind 'sd3' loads its encoders from a pretrained folder; pass --pretrained DIR")
        return SD3TextEncoder(Path(config.pretrained), config.text.context_length)
    raise ValueError(f"unknown text encoder kind {config.text.kind!r}; use 'open_clip' or 'sd3'")


class RefLayerDenoiser(nn.Module):
    """The input convolution followed by the MMDiT.

    The convolution maps [x_t, image latent, canvas latent] (B, 3C, h, w) to the
    transformer's input channels: C for a pretrained SD3 transformer, or up to 3C.
    Input channel i starts copied to output channel i, and the rest of the kernel at
    zero. With C outputs that is the identity on x_t and zero on the two
    conditions, so a pretrained transformer first receives its usual input.
    """

    def __init__(self, transformer: SD3Transformer2DModel, kernel_size: int):
        super().__init__()
        latent_channels = transformer.config.out_channels
        in_channels = transformer.config.in_channels
        self.compress = nn.Conv2d(3 * latent_channels, in_channels, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.compress.weight.zero_()
            self.compress.bias.zero_()
            centre = kernel_size // 2
            for channel in range(min(in_channels, 3 * latent_channels)):
                self.compress.weight[channel, channel, centre, centre] = 1.0
        self.transformer = transformer

    def forward(
        self,
        x_t: torch.Tensor,
        image_latent: torch.Tensor,
        canvas_latent: torch.Tensor,
        t: torch.Tensor,
        hidden: torch.Tensor,
        pooled: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the velocity (B, C, h, w) at times t (B,) in [0, 1]."""
        x = self.compress(torch.cat([x_t, image_latent, canvas_latent], dim=1))
        # SD3's transformer embeds timesteps on the 0..1000 scale of the scheduler.
        return self.transformer(
            hidden_states=x,
            encoder_hidden_states=hidden,
            pooled_projections=pooled,
            timestep=t * 1000,
            return_dict=False,
        )[0]


def build_transformer(config: ModelConfig, hidden_dim: int, pooled_dim: int, latent_channels: int) -> SD3Transformer2DModel:
    """Load the MMDiT from the pretrained folder, or build a new one from the config."""
    transformer_config = config.transformer
    if transformer_config.pretrained_subfolder is not None and config.pretrained is not None:
        return SD3Transformer2DModel.from_pretrained(_pretrained_dir(config, transformer_config.pretrained_subfolder))
    return SD3Transformer2DModel(
        sample_size=transformer_config.sample_size,
        patch_size=transformer_config.patch_size,
        in_channels=transformer_config.in_channels or latent_channels,
        out_channels=latent_channels,
        num_layers=transformer_config.num_layers,
        attention_head_dim=transformer_config.attention_head_dim,
        num_attention_heads=transformer_config.num_attention_heads,
        joint_attention_dim=hidden_dim,
        caption_projection_dim=transformer_config.caption_projection_dim,
        pooled_projection_dim=pooled_dim,
        pos_embed_max_size=transformer_config.pos_embed_max_size,
    )


class RefLayer(nn.Module):
    """All of RefLayer: VAE, text encoder, denoiser, alpha decoder and visibility decoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.text.kind == "sd3" and config.pretrained is None:
            raise ValueError("text kind 'sd3' loads its encoders from a pretrained folder; pass --pretrained DIR")
        self.config = config
        self.vae = build_vae(config)
        self.text_encoder = build_text_encoder(config)
        transformer = build_transformer(
            config, self.text_encoder.hidden_dim, self.text_encoder.pooled_dim, self.vae.config.latent_channels
        )
        self.denoiser = RefLayerDenoiser(transformer, config.transformer.compress_kernel_size)
        self.alpha_decoder = build_map_decoder(self.vae)
        self.visibility_decoder = build_map_decoder(self.vae)

    @property
    def latent_scale(self) -> tuple[float, float]:
        """The (shift_factor, scaling_factor) that normalise the VAE's latents."""
        shift = self.vae.config.shift_factor or 0.0
        return shift, self.vae.config.scaling_factor

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode (B, 3, R, R) in [-1, 1] to normalised latents, using the posterior mean."""
        shift, scale = self.latent_scale
        z = self.vae.encode(pixels).latent_dist.mode()
        return (z - shift) * scale

    def decode_rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode normalised latents to RGB (B, 3, R, R) in [-1, 1] (not clamped)."""
        shift, scale = self.latent_scale
        return self.vae.decode(latent / scale + shift).sample

    def decode_alpha_logits(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode normalised latents to alpha logits (B, 1, R, R)."""
        shift, scale = self.latent_scale
        return self.alpha_decoder(latent / scale + shift)

    def decode_visibility_logits(self, image_latent: torch.Tensor) -> torch.Tensor:
        """Decode normalised image latents to the logits (B, 1, R, R) of the background's visibility.

        The target is `reference_model.data.visibility_target` of the background
        layer: where the image shows the background's own colour, with no object,
        semi-transparent or not, over it.
        """
        shift, scale = self.latent_scale
        return self.visibility_decoder(image_latent / scale + shift)

    def trained_modules(self) -> dict[str, nn.Module]:
        """Return the parts whose weights a checkpoint stores: all but the frozen pretrained ones."""
        modules: dict[str, nn.Module] = {
            "denoiser": self.denoiser, "alpha_decoder": self.alpha_decoder, "visibility_decoder": self.visibility_decoder,
        }
        if self.config.vae.pretrained_subfolder is None or self.config.pretrained is None:
            modules["vae"] = self.vae
        if self.config.text.kind == "open_clip":
            modules["text_encoder"] = self.text_encoder
        return modules
