"""CPU inference speed of the shipped ViT configuration.

Prints, for the shipped checkpoint (or, if none is shipped yet, a randomly initialised
network of the default ``ViTConfig``; speed does not depend on the weights):

* ms per pattern at batch 1: the network alone (``ViT.forward`` under
  ``torch.inference_mode``), and end to end (``Classifier.predict`` on a ``Pattern`` at
  another wavelength: resampling, network, calibration), against the 10 ms goal;
* patterns per second at batch 256 (network alone);
* a reference measured in the same run: the same network under ``torch.no_grad`` only
  (plain eager autograd-free mode), and the ratio reference / measured.

Usage::

    python benchmarks/inference.py [--threads 2] [--repeats 100] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from ratagent.model.calibration import Calibration
from ratagent.model.inference import Classifier
from ratagent.model.vit import ViT, ViTConfig
from ratagent.patterns import Pattern

GOAL_MS = 10.0


def _median_s(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _classifier(path: str | None) -> tuple[Classifier, str]:
    if path is not None:
        return Classifier.from_checkpoint(path), f"checkpoint {path}"
    try:
        return Classifier.from_checkpoint(), "shipped checkpoint"
    except FileNotFoundError:
        model = ViT(ViTConfig(), generator=torch.Generator().manual_seed(0))
        return Classifier(model, Calibration(), "random-init"), "default ViTConfig, random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls at batch 1")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    clf, what = _classifier(args.checkpoint)
    model, cfg = clf.model, clf.model.config
    rng = np.random.default_rng(0)
    x1 = torch.from_numpy(rng.random((1, cfg.n_points), dtype=np.float32) * 1000)
    x256 = torch.from_numpy(rng.random((256, cfg.n_points), dtype=np.float32) * 1000)
    tth = np.arange(2.0, 42.0, 0.005)  # Mo Kα: resampled onto the Cu-based Q grid
    pattern = Pattern(tth, rng.random(tth.size) * 1000, 0.7093)

    def timed(ctx: Callable[[], contextlib.AbstractContextManager], x: torch.Tensor, n: int):
        def call() -> None:
            with ctx():
                model(x)

        return _median_s(call, n)

    ref_1 = timed(torch.no_grad, x1, args.repeats)
    net_1 = timed(torch.inference_mode, x1, args.repeats)
    e2e_1 = _median_s(lambda: clf.predict(pattern), args.repeats)
    ref_256 = timed(torch.no_grad, x256, 5)
    net_256 = timed(torch.inference_mode, x256, 5)

    print(f"model: {what}; {model.num_parameters():,} parameters")
    print(
        f"config: patch {cfg.patch_size}, {cfg.n_tokens} tokens, width {cfg.width}, "
        f"depth {cfg.depth}, heads {cfg.heads}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'':34}{'measured':>12}{'reference':>12}{'ratio':>8}")
    print(f"{'batch 1, network (ms/pattern)':34}{1e3 * net_1:12.2f}{1e3 * ref_1:12.2f}{ref_1 / net_1:8.2f}")
    print(f"{'batch 1, end to end (ms/pattern)':34}{1e3 * e2e_1:12.2f}")
    print(
        f"{'batch 256, network (patterns/s)':34}{256 / net_256:12.0f}{256 / ref_256:12.0f}"
        f"{ref_256 / net_256:8.2f}"
    )
    print("reference: the same network under torch.no_grad instead of torch.inference_mode")
    verdict = "meets" if e2e_1 * 1e3 < GOAL_MS else "MISSES"
    print(f"goal: < {GOAL_MS:g} ms/pattern at batch 1 end to end -> {verdict} ({1e3 * e2e_1:.2f} ms)")


if __name__ == "__main__":
    main()
