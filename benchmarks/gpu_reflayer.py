"""Time one training step and one sampling step of RefLayer's sd3-medium denoiser.

The transformer has Stable Diffusion 3 Medium's configuration with random weights
(no download), wrapped in RefLayer's input compression conv, in bf16 on one GPU.
Prints the wall time of each step and the peak GPU memory.

NOTE: not yet run on a GPU; only its CPU refusal path has run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from reference_model.config import sd3_medium
from reference_model.networks import RefLayerDenoiser, build_transformer

HIDDEN_DIM = 4096  # T5-XXL width, the SD3 text encoders' token width
POOLED_DIM = 2048  # CLIP-L + CLIP-G projections


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=1, help="examples per training step (default 1)")
    parser.add_argument("--resolution", type=int, default=1024, help="image side in pixels; the latent is 1/8 of it (default 1024)")
    parser.add_argument("--text-tokens", type=int, default=154, help="text tokens: 77 CLIP + the preset's 77 T5 (default 154)")
    return parser.parse_args()


def timed(step) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    step()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device found; this benchmark needs a GPU", file=sys.stderr)
        return 1
    args = parse_args()
    device = torch.device("cuda")
    config = sd3_medium()
    transformer = build_transformer(config, HIDDEN_DIM, POOLED_DIM, latent_channels=16)
    denoiser = RefLayerDenoiser(transformer, config.transformer.compress_kernel_size).to(device, torch.bfloat16)
    parameters = sum(p.numel() for p in denoiser.parameters())
    print(f"denoiser parameters: {parameters / 1e9:.3f} B")
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-5)

    side = args.resolution // 8
    batch = args.batch_size

    def inputs(size: int):
        latent = torch.randn(size, 16, side, side, device=device, dtype=torch.bfloat16)
        hidden = torch.randn(size, args.text_tokens, HIDDEN_DIM, device=device, dtype=torch.bfloat16)
        pooled = torch.randn(size, POOLED_DIM, device=device, dtype=torch.bfloat16)
        t = torch.rand(size, device=device, dtype=torch.bfloat16)
        return latent, hidden, pooled, t

    def train_step() -> None:
        latent, hidden, pooled, t = inputs(batch)
        velocity = denoiser(latent, latent, latent, t, hidden, pooled)
        loss = torch.nn.functional.mse_loss(velocity.float(), latent.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.inference_mode()
    def sample_step() -> None:
        # One Euler step with classifier-free guidance: conditional and unconditional in one batch.
        latent, hidden, pooled, t = inputs(2)
        velocity = denoiser(latent, latent, latent, t, hidden, pooled)
        conditional, unconditional = velocity.chunk(2)
        _ = latent[:1] - 0.05 * (unconditional + 5.0 * (conditional - unconditional))

    for name, step in (("training step", train_step), ("sampling step", sample_step)):
        torch.cuda.reset_peak_memory_stats()
        first = timed(step)
        second = timed(step)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"{name}: first {first:.3f} s, second {second:.3f} s, peak memory {peak:.2f} GiB "
              f"(batch {batch if name == 'training step' else 2}, {args.resolution} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
