"""Write a diffusers-format Stable Diffusion 3 folder with tiny random networks.

It has the folder layout and file formats of stabilityai/stable-diffusion-3-medium-diffusers
(vae, transformer, three text encoders and their tokenizers), so the sd3-medium
loading code runs on it, but every network is a few thousand parameters. The CLIP
tokenizers know the 26 lower-case letters and no merges, so each word becomes its
letters. The T5 tokenizer is a unigram model over the same letters.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

LETTERS = [chr(code) for code in range(ord("a"), ord("z") + 1)]
LATENT_CHANNELS = 4
T5_WIDTH = 64
# Hidden width and projection size of the two CLIP text encoders.
CLIP_SIZES = {"text_encoder": (16, 8), "text_encoder_2": (24, 8)}


def _clip_vocabulary() -> dict[str, int]:
    tokens = LETTERS + [letter + "</w>" for letter in LETTERS] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def _write_clip(folder: Path, vocabulary: dict[str, int]) -> None:
    for tokenizer_name, encoder_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tokenizer_folder = folder / tokenizer_name
        tokenizer_folder.mkdir()
        (tokenizer_folder / "vocab.json").write_text(json.dumps(vocabulary))
        (tokenizer_folder / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(
            str(tokenizer_folder / "vocab.json"), str(tokenizer_folder / "merges.txt"), pad_token="<|endoftext|>"
        )
        tokenizer.save_pretrained(tokenizer_folder)
        hidden, projection = CLIP_SIZES[encoder_name]
        config = CLIPTextConfig(
            vocab_size=len(vocabulary), hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, projection_dim=projection,
            bos_token_id=vocabulary["<|startoftext|>"], eos_token_id=vocabulary["<|endoftext|>"],
            pad_token_id=vocabulary["<|endoftext|>"],
        )
        CLIPTextModelWithProjection(config).save_pretrained(folder / encoder_name)


def _write_t5(folder: Path) -> None:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)] + [(letter, -3.0) for letter in LETTERS]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer_folder = folder / "tokenizer_3"
    tokenizer_folder.mkdir()
    backend.save(str(tokenizer_folder / "tokenizer.json"))
    tokenizer = T5TokenizerFast(
        tokenizer_file=str(tokenizer_folder / "tokenizer.json"), pad_token="<pad>", eos_token="</s>",
        unk_token="<unk>", extra_ids=0,
    )
    tokenizer.save_pretrained(tokenizer_folder)
    config = T5Config(vocab_size=len(pieces), d_model=T5_WIDTH, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(folder / "text_encoder_3")


def make_sd3_folder(folder: Path, seed: int = 0) -> Path:
    """Write the tiny SD3 folder at `folder` (created) for 32 px images; returns the folder."""
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=LATENT_CHANNELS,
        norm_num_groups=4, sample_size=32,
    ).save_pretrained(folder / "vae")
    _write_clip(folder, _clip_vocabulary())
    _write_t5(folder)
    SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_WIDTH, caption_projection_dim=32,
        pooled_projection_dim=sum(projection for _, projection in CLIP_SIZES.values()), pos_embed_max_size=16,
    ).save_pretrained(folder / "transformer")
    return folder
