"""Seconds per pattern of ``ratagent.indexing.index`` by crystal system (2θ 5–90°, Cu Kα1).

Line lists come from random cells of each system (volume 100–600 Å³, axis ratios ≤ 2.5,
β 95–115°) with the absences of one representative space group, 0.005° position
noise, a 0.02° zero shift and one impurity line. Prints seconds per pattern, the ratio
to the cubic time measured in the same run, and how often the true lattice is among the
top 3 candidates (within 0.1 %).

``--rendered``: instead, patterns rendered as in ``indexing_accuracy.py`` (counts,
impurity, Kα2) go through :func:`~ratagent.indexing.find_peaks`, and ``index`` is timed
on each peak list with and without its residual profile: the ratio is the cost of the
search for superstructure lines in the profile
(:func:`~ratagent.indexing.supercells.profile_supercell`).

``--measured K``: instead, every K-th measured dev pattern (``training/data/rruff_dev.npz``,
Cu Kα1/Kα2) is indexed with the compiled reflection lists of a trial refinement and with
numpy's box (their fallback), the two timed alternately on each pattern (best of
``--repeats``); prints the total seconds each way, their ratio, and whether every
pattern gave the same cells (same lattices and M20, in any axis order).

    python benchmarks/indexing.py [--n 10] [--seed 0] [--rendered] [--measured 19]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import gemmi
import numpy as np

from ratagent.indexing import find_peaks, index, lines_from_cell, perturb_lines, same_lattice
from ratagent.patterns import CU_KA1_ANGSTROM

#: One space group per system (H–M symbol, setting of the generated cell).
GROUPS = {
    "cubic": "F m -3 m",
    "tetragonal": "I 41/a m d:1",
    "hexagonal": "P 63/m m c",
    "trigonal": "R -3 c:H",
    "orthorhombic": "P n m a",
    "monoclinic": "P 1 21/c 1",
}


def random_cell(system: str, rng: np.random.Generator) -> np.ndarray:
    """A random cell of the system with volume 100–600 Å³."""
    r = np.exp(rng.uniform(-np.log(2.5), np.log(2.5), 2))
    beta = rng.uniform(95, 115) if system == "monoclinic" else 90.0
    gamma = 120.0 if system in ("hexagonal", "trigonal") else 90.0
    ratios = {
        "cubic": (1, 1, 1),
        "tetragonal": (1, 1, r[0]),
        "hexagonal": (1, 1, r[0]),
        "trigonal": (1, 1, 2.5 * r[0]),
        "orthorhombic": (1, r[0], r[1]),
        "monoclinic": (1, r[0], r[1]),
    }[system]
    v = rng.uniform(100, 600)
    shape = np.prod(ratios) * np.sin(np.radians(beta)) * (np.sqrt(3) / 2 if gamma == 120 else 1)
    a = (v / shape) ** (1 / 3)
    return np.array([a * ratios[0], a * ratios[1], a * ratios[2], 90.0, beta, gamma])


def rendered(n: int, seed: int) -> None:
    """Seconds of ``index`` per rendered pattern with and without the residual profile."""
    from indexing_accuracy import SYSTEMS, case  # the script beside this one

    print(f"{'system':14s} {'s/pattern':>10s} {'no profile':>11s} {'ratio':>7s} {'same top-3':>11s}")
    for system in SYSTEMS:
        with_p, without, same = [], [], 0
        for i in range(n):
            _, _, inst, pat = case(seed, system, i)
            peaks = find_peaks(pat, instrument=inst)
            t0 = time.perf_counter()
            a = index(dataclasses.replace(peaks, residual=None))
            t1 = time.perf_counter()
            b = index(peaks)
            t2 = time.perf_counter()
            without.append(t1 - t0)
            with_p.append(t2 - t1)
            same += [c.cell for c in a.top(3)] == [c.cell for c in b.top(3)]
        m, m0 = float(np.mean(with_p)), float(np.mean(without))
        print(f"{system:14s} {m:10.2f} {m0:11.2f} {m / m0:7.2f} {same:7d}/{n}")


def measured(every: int, repeats: int) -> None:
    """Indexing of measured patterns, compiled reflection lists against numpy's box."""
    from pathlib import Path

    from ratagent.indexing import refine
    from ratagent.instrument import Instrument
    from training.evaluate import load_dev_set

    inst = Instrument.for_radiation("Cu")
    alpha2 = (inst.wavelengths_angstrom[1], inst.line_ratios[1] / inst.line_ratios[0])
    patterns, _ = load_dev_set(Path(__file__).resolve().parents[1] / "training/data/rruff_dev.npz")
    peaks = [find_peaks(p, alpha2=alpha2) for p in patterns[::every]]
    compiled = refine.enumerate_reflections
    index(peaks[0])  # compiled kernels warm

    def timed(pk, kernel):
        refine.enumerate_reflections = kernel
        try:
            t0 = time.perf_counter()
            res = index(pk)
            return time.perf_counter() - t0, res
        finally:
            refine.enumerate_reflections = compiled

    def lattices(res):
        return sorted((c.crystal_system, c.centring, tuple(np.round(sorted(c.cell[:3]), 4)),
                       tuple(np.round(c.cell[3:], 3)), round(c.m20, 3)) for c in res.candidates)

    totals, same = {"compiled": 0.0, "numpy": 0.0}, 0
    for i, pk in enumerate(peaks):
        best = {"compiled": np.inf, "numpy": np.inf}
        found = {}
        for r in range(repeats):
            order = ("compiled", "numpy") if (i + r) % 2 == 0 else ("numpy", "compiled")
            for side in order:
                t, res = timed(pk, compiled if side == "compiled" else None)
                best[side] = min(best[side], t)
                found[side] = lattices(res)
        for side in totals:
            totals[side] += best[side]
        same += found["compiled"] == found["numpy"]
    n = len(peaks)
    print(f"{n} measured patterns: compiled reflection lists {totals['compiled'] / n:.2f} s/pattern, "
          f"numpy box {totals['numpy'] / n:.2f} s/pattern; same cells on {same}/{n}")
    print(f"RATIO indexing, compiled vs numpy reflection lists: {totals['numpy'] / totals['compiled']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="patterns per system")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rendered", action="store_true", help="rendered patterns, with/without profile")
    ap.add_argument("--measured", type=int, metavar="K", help="every K-th measured dev pattern, "
                    "compiled reflection lists against numpy's")
    ap.add_argument("--repeats", type=int, default=2, help="timings per pattern and side (--measured)")
    args = ap.parse_args()
    if args.measured:
        measured(args.measured, args.repeats)
        return
    if args.rendered:
        rendered(args.n, args.seed)
        return
    rng = np.random.default_rng(args.seed)
    rows = []
    for system, sg in GROUPS.items():
        times, hits = [], 0
        for _ in range(args.n):
            cell = random_cell(system, rng)
            tth = perturb_lines(
                lines_from_cell(cell, sg, CU_KA1_ANGSTROM),
                rng,
                sigma_deg=0.005,
                zero_shift_deg=0.02,
                n_impurity=1,
            )
            t0 = time.perf_counter()
            res = index(tth, wavelength=CU_KA1_ANGSTROM)
            times.append(time.perf_counter() - t0)
            centring = gemmi.SpaceGroup(sg).centring_type()
            hits += any(same_lattice(c.cell, cell, 1e-3, c.centring, centring) for c in res.candidates[:3])
        rows.append((system, float(np.mean(times)), float(np.max(times)), hits))
    ref = rows[0][1]
    print(f"{'system':14s} {'s/pattern':>10s} {'max s':>8s} {'× cubic':>8s} {'top-3':>7s}")
    for system, mean, worst, hits in rows:
        print(f"{system:14s} {mean:10.2f} {worst:8.2f} {mean / ref:8.1f} {hits:3d}/{args.n}")


if __name__ == "__main__":
    main()
