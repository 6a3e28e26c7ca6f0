"""Benchmark: one training step, part by part, for a config beside the shipped model.

A step of :func:`training.fit.fit` is: render a batch from the bank under a phase's
conditions (:func:`training.fit.make_batch`), the network's forward pass (its stem, its
transformer blocks, the rest: preprocessing, pooling, heads and loss), the backward pass
and the AdamW step. Each part is timed over ``--steps`` steps (after two warm-up steps;
on a GPU with a synchronisation at each boundary, so the parts add up to the step), for
the shipped model's architecture and for each ``--config``, at the same batch size and
conditions, in the same run. It prints samples/s and the share of each part, and each
config's rate as a ratio to the shipped architecture's.

    python benchmarks/train_step.py [--config configs/gpu_p50d6.toml ...] [--batch 32]
        [--phase hard] [--steps 10] [--device cpu] [--threads 2] [--bank banks/main]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("render", "stem", "blocks", "rest of forward", "backward", "optimiser")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(vit_config, records, impurities, augmentation, batch: int, steps: int,
               device: torch.device, seed: int = 0) -> dict[str, float]:
    """Seconds per step of each part (``PARTS``) and ``samples_per_s``."""
    from ratagent.instrument import Instrument
    from ratagent.model.vit import ViT
    from training.fit import make_batch

    model = ViT(vit_config, generator=torch.Generator().manual_seed(seed)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    instrument = Instrument.from_grid(vit_config.grid)
    rng = np.random.default_rng(seed)
    marks: dict[str, float] = {}

    def mark(name):
        def hook(*_):
            _sync(device)
            marks[name] = time.perf_counter()
        return hook

    model.patch_embed.register_forward_pre_hook(mark("stem in"))
    model.patch_embed.register_forward_hook(mark("stem out"))
    model.blocks[0].register_forward_pre_hook(mark("blocks in"))
    model.blocks[-1].register_forward_hook(mark("blocks out"))
    spent: dict[str, float] = defaultdict(float)
    for i in range(steps + 2):
        _sync(device)
        t0 = time.perf_counter()
        x, mask, target = make_batch(records, impurities, instrument, augmentation, batch, rng, device)
        _sync(device)
        t1 = time.perf_counter()
        loss = model.loss(model(x, mask), target, (1.0, 1.0, 1.0, 1.0))
        _sync(device)
        t2 = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t3 = time.perf_counter()
        optimiser.step()
        _sync(device)
        t4 = time.perf_counter()
        if i < 2:
            continue
        stem = marks["stem out"] - marks["stem in"]
        blocks = marks["blocks out"] - marks["blocks in"]
        parts = (t1 - t0, stem, blocks, t2 - t1 - stem - blocks, t3 - t2, t4 - t3)
        for part, dt in zip(PARTS, parts, strict=True):
            spent[part] += dt / steps
    out = dict(spent)
    out["samples_per_s"] = batch / sum(spent[p] for p in PARTS)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="*", default=[str(ROOT / "configs/gpu_p50d6.toml")],
                        help="training configs whose [model] is timed beside the shipped one")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--phase", default="hard", help="a preset of training.config.PRESETS")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bank", default=None, help="a structure bank (default: 2 000 structures made here)")
    args = parser.parse_args()

    from ratagent.model.vit import ViTConfig
    from ratagent.simulation import write_bank
    from training.config import PRESETS, FitConfig
    from training.fit import load_records, split_impurities

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        bank = args.bank
        if bank is None:
            bank = tmp
            write_bank(bank, 2000, shard_size=500, seed=20261204, workers=2, progress=False)
        impurities, records = split_impurities(load_records(bank), 64)
    shipped = json.loads((ROOT / "ratagent/model/checkpoints/default/config.json").read_text())
    models = {"shipped": ViTConfig.from_dict(shipped["vit"], saved=True)}
    models |= {Path(c).stem: FitConfig.from_toml(c).model for c in args.config}
    print(f"{args.device}, {args.threads} threads, batch {args.batch}, {args.phase} conditions, "
          f"{args.steps} steps each")
    head = f"{'model':>12} {'params':>9} {'samples/s':>10} {'ratio':>6}  "
    print(head + "  ".join(f"{p:>15}" for p in PARTS))
    reference = None
    for name, config in models.items():
        t = time_steps(config, records, impurities, PRESETS[args.phase], args.batch, args.steps, device)
        reference = reference or t["samples_per_s"]
        total = sum(t[p] for p in PARTS)
        shares = "  ".join(f"{1000 * t[p]:8.0f} ms {100 * t[p] / total:3.0f}%" for p in PARTS)
        print(f"{name:>12} {t['parameters'] / 1e6:8.2f}M {t['samples_per_s']:10.1f} "
              f"{t['samples_per_s'] / reference:6.2f}  {shares}")


if __name__ == "__main__":
    main()
