"""Benchmark: the batched renderer against pymatgen's XRDCalculator, in one run.

Both sides produce full patterns on the model grid (2θ 5–90°, step 0.01°, 8501 points)
for the same mixed set of random bank structures:

* ours: reflection lists from the bank (|F|² precomputed, as in training), rendered in
  batches with Kα1 + Kα2, TCH pseudo-Voigt, LP; also the whole forward model
  (:func:`simulate_batch`: strain, texture, background, noise).
* pymatgen: ``XRDCalculator(1.5406).get_pattern`` (stick pattern from the structure) plus
  a plain per-peak pseudo-Voigt on every grid point (one line, fixed TCH width per peak).

It prints patterns/s both ways and their ratio (goal ≥ 100 on equal CPU cores), the
renderer's rate on a stream of batches (``--stream``, as training draws them) through a
:class:`RenderPool` of ``--processes`` processes against one process (goal ≥ 1.8 on 2
cores), and the structure-bank generation rate (structures/s, serial and with parallel
workers) against pyxtal's random structure generation (goal ≥ 10), all measured in the
same run. pyxtal (``pyxtal.from_random``) gets the same space groups and the same
compositions (atoms of each element per cell) as our first ``--pyxtal`` structures, and
only builds structures, while our rate includes the reflection lists; both are timed
with their per-space-group tables warm.

Usage: ``python benchmarks/simulate.py [--structures 256] [--pymatgen 24] [--pyxtal 200] [--processes 2]``
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings
from collections import Counter

# numpy's OpenBLAS threads spin on the other core for a while after each call, so
# pymatgen's "1 core" took two and the renderer's 1-thread timing shared its core with
# them: every BLAS call here is single-threaded (set before numpy loads it)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from ratagent.instrument import Instrument
from ratagent.simulation import AugmentationConfig, collate, reflection_list, render, simulate_batch
from ratagent.simulation.bank import sample_space_group, write_bank
from ratagent.simulation.physics import caglioti_tch
from ratagent.simulation.pool import RenderPool
from ratagent.simulation.structures import random_crystal


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Shortest wall time and shortest process CPU time of ``repeats`` calls, seconds.

    On a shared machine the minimum is the cost; CPU time is what a free core would need.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def pymatgen_patterns(crystals, inst: Instrument) -> tuple[float, float]:
    """Wall and CPU seconds per pattern: XRDCalculator + per-peak pseudo-Voigt on the full grid."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.core import Lattice, Structure

    calc = XRDCalculator(wavelength=inst.wavelength)
    grid = inst.two_theta
    t0, c0 = time.perf_counter(), time.process_time()
    for c in crystals:
        st = Structure(Lattice.from_parameters(*c.cell), list(c.elements), c.frac)
        pat = calc.get_pattern(
            st, scaled=False, two_theta_range=(inst.two_theta_min_deg, inst.two_theta_max_deg)
        )
        x, y = np.asarray(pat.x), np.asarray(pat.y)
        fw, eta = (
            a.numpy()
            for a in caglioti_tch(
                torch.as_tensor(x), inst.u_deg2, inst.v_deg2, inst.w_deg2, inst.x_deg, inst.y_deg
            )
        )
        z2 = ((grid[None, :] - x[:, None]) / fw[:, None]) ** 2
        lor = (2 / np.pi) / (1 + 4 * z2)
        gau = 2 * np.sqrt(np.log(2) / np.pi) * np.exp(-4 * np.log(2) * z2)
        _ = (y / fw) @ (eta[:, None] * lor + (1 - eta[:, None]) * gau)
    n = len(crystals)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def pyxtal_structures(crystals) -> tuple[float, int] | None:
    """Seconds per attempted pyxtal structure with each crystal's space group and composition,
    and how many attempts failed; None when pyxtal is not installed."""
    try:
        from pyxtal import pyxtal
    except ImportError:
        return None
    failed = 0
    t0 = time.perf_counter()
    for c in crystals:
        counts = Counter(c.elements)
        xtal = pyxtal()
        try:
            xtal.from_random(3, c.sg_number, list(counts), list(counts.values()))
            failed += not xtal.valid
        except Exception:  # pyxtal signals compositions it cannot place by raising
            failed += 1
    return (time.perf_counter() - t0) / len(crystals), failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", type=int, default=256, help="bank structures rendered per batch")
    ap.add_argument("--pymatgen", type=int, default=24, help="structures for the pymatgen timing")
    ap.add_argument("--pyxtal", type=int, default=200,
                    help="structures for the pyxtal timing (its time per structure varies tenfold "
                         "with the composition: a few dozen make the ratio swing by a fifth)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads of the full forward model")
    ap.add_argument("--processes", type=int, default=2, help="RenderPool processes (cores) for ours")
    ap.add_argument("--stream", type=int, default=64, help="batches in the timed stream")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bank-workers", type=int, default=2)
    ap.add_argument("--d-min", type=float, default=1.0, help="bank d-spacing limit, Å")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # pymatgen's deprecation chatter is not ours to time
    inst = Instrument()  # Cu Kα1/Kα2, 2θ 5–90°, 0.01°: 8501 points
    rng = np.random.default_rng(0)

    # -- structure bank rate (serial, this process) ----------------------------------
    # Both generators keep per-space-group tables; a bank shard of 1000 structures pays for
    # them once, so both are timed warm: ours after one structure per space group, pyxtal
    # on its second pass over the same space groups and compositions.
    warm = np.random.default_rng(1)
    for sg in range(1, 231):
        reflection_list(random_crystal(sg, warm), args.d_min)
    t0 = time.perf_counter()
    crystals = [random_crystal(sample_space_group(rng), rng) for _ in range(args.structures)]
    records = [reflection_list(c, args.d_min, "random") for c in crystals]
    serial_rate = args.structures / (time.perf_counter() - t0)
    n_refl = np.array([len(r) for r in records])
    print(f"machine: {torch.get_num_threads()} torch threads available, cuda={torch.cuda.is_available()}")
    print(
        f"bank: {args.structures} structures, reflections/structure mean {n_refl.mean():.0f}, "
        f"max {n_refl.max()}, d_min {args.d_min} Å"
    )
    print(f"bank generation, 1 process: {serial_rate:.0f} structures/s")
    pyx = pyxtal_structures(crystals[: args.pyxtal])
    if pyx is not None:
        pyx = pyxtal_structures(crystals[: args.pyxtal])
    if pyx is None:
        print("pyxtal is not installed: no same-run reference for bank generation")
    else:
        print(
            f"pyxtal from_random, same space groups and compositions (1 process, {args.pyxtal} "
            f"structures, second pass, {pyx[1]} failed): {1 / pyx[0]:.1f} structures/s"
        )
        print(
            f"RATIO bank generation (structures + reflection lists) vs pyxtal, 1 process each: "
            f"{serial_rate * pyx[0]:.1f}x"
        )
    with tempfile.TemporaryDirectory() as tmp:
        n_par = 200 * args.bank_workers
        t0 = time.perf_counter()
        write_bank(
            tmp, n_par, shard_size=200, seed=1, d_min=args.d_min, workers=args.bank_workers, progress=False
        )
        par_rate = n_par / (time.perf_counter() - t0)
    print(
        f"bank generation, {args.bank_workers} worker processes (npz shards, with start-up): "
        f"{par_rate:.0f} structures/s"
    )

    # -- pymatgen on the same structures (1 core) -------------------------------------
    wall_pm, cpu_pm = pymatgen_patterns(crystals[: args.pymatgen], inst)
    print(
        f"pymatgen XRDCalculator + per-peak pV (1 core, {args.pymatgen} patterns): "
        f"{1 / wall_pm:.1f} patterns/s wall, {1 / cpu_pm:.1f} per CPU-second"
    )

    # -- ours, CPU ---------------------------------------------------------------------
    torch.set_num_threads(1)
    wall, cpu = best_of(lambda: render(collate(records), inst), args.repeats)
    rate_1, cpu_rate_1 = args.structures / wall, args.structures / cpu
    print(
        f"ours render, CPU 1 process, batch {args.structures}: {rate_1:.0f} patterns/s wall, "
        f"{cpu_rate_1:.0f} per CPU-second"
    )
    # a stream of batches, as training draws them: one process against a RenderPool
    picks = [rng.integers(0, len(records), args.structures) for _ in range(args.stream)]
    stream = [collate([records[i] for i in pick]) for pick in picks]
    n_stream = args.stream * args.structures
    with RenderPool(args.processes) as pool:
        list(pool.map(stream[: 2 * args.processes], inst))  # workers warm: imports, first render
        # interleaved, so that the machine's drift hits both sides alike
        serial = pooled = split = single = math.inf
        for _ in range(args.repeats):
            serial = min(serial, best_of(lambda: [render(b, inst) for b in stream], 1)[0])
            pooled = min(pooled, best_of(lambda: list(pool.map(stream, inst)), 1)[0])
            single = min(single, best_of(lambda: render(stream[0], inst), 1)[0])
            split = min(split, best_of(lambda: pool.render(stream[0], inst), 1)[0])
    print(
        f"ours render, stream of {args.stream} batches of {args.structures}: 1 process "
        f"{n_stream / serial:.0f} patterns/s, RenderPool({args.processes}).map "
        f"{n_stream / pooled:.0f} patterns/s; "
        f"one batch split by RenderPool.render {single / split:.2f}x one process"
    )
    aug = AugmentationConfig(impurity_probability=0.2)

    def full() -> None:
        cond = aug.sample(rng, args.structures)
        simulate_batch(records, inst, cond, rng, impurities=records[:16])

    wall, cpu = best_of(full, args.repeats)
    print(
        f"ours full forward model (strain, texture, impurity, background, Poisson), "
        f"CPU {args.threads} threads: {args.structures / wall:.0f} patterns/s wall, "
        f"{args.structures / cpu:.0f} per CPU-second"
    )
    print(f"RATIO render stream on {args.processes} processes vs 1 process, wall: {serial / pooled:.2f}x")
    print(f"RATIO render vs pymatgen, 1 core each, wall: {rate_1 * wall_pm:.0f}x")
    print(f"RATIO render vs pymatgen, per CPU-second: {cpu_rate_1 * cpu_pm:.0f}x")
    print(
        f"RATIO ours on {args.processes} processes vs pymatgen on {args.processes} cores "
        f"(perfectly parallel), wall: {n_stream / pooled * wall_pm / args.processes:.0f}x"
    )

    # -- ours, GPU -----------------------------------------------------------------------
    if torch.cuda.is_available():
        batch = collate(records, device="cuda")
        render(batch, inst)  # warm-up: kernels and allocator
        wall, _ = best_of(lambda: render(collate(records, device="cuda"), inst), args.repeats)
        wall_only, _ = best_of(lambda: render(batch, inst), args.repeats)
        print(
            f"ours render, GPU {torch.cuda.get_device_name()}: {args.structures / wall:.0f} patterns/s "
            f"with collate, {args.structures / wall_only:.0f} patterns/s render only"
        )


if __name__ == "__main__":
    main()
