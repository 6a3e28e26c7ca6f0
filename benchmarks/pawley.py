"""Seconds per frame of :func:`ratagent.refinement.rank`: DAG-local candidates vs every EG of the system.

For each frame (a simulated Cu Kα1/Kα2 pattern of a random structure, 10⁴ peak counts,
cell strained by up to 0.5 %): the local set is the true EG and its DAG neighbours,
at most 8 (what the agent fits per frame); the full set is every EG of the same lattice
family. Both are timed in the same run on the same frames. Goal: < 5 s per frame for the
local set on 2 cores.

Then the local set again, with the non-linear stages as lmfit ``Parameters`` (the engine)
against ``scipy.optimize.least_squares`` called directly (the reference below, the
engine before lmfit): the ratio of their times, and the largest difference of a
candidate's criterion B between them. Goal: lmfit ≤ 1.2× the direct call.

Last, the local set with the fit's analytic Jacobian (Golub–Pereyra, the default) against
finite differences (``PawleyConfig(analytic_jacobian=False)``): the ratio of their times,
the largest |ΔB| of a candidate and whether the leaders agree.

Usage: ``python benchmarks/pawley.py [seed]``.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from ratagent.crystallography import extinction_group, extinction_groups, neighbours, sg_to_eg
from ratagent.instrument import Instrument
from ratagent.refinement import PawleyConfig, rank, stages
from ratagent.simulation import random_record, simulate_pattern
from ratagent.simulation.lattice import strain_cell

#: (space group, crystal system) of the frames: one per lattice family with several EGs.
FRAMES = ((225, "cubic"), (88, "tetragonal"), (176, "hexagonal"), (62, "orthorhombic"), (14, "monoclinic"))
MAX_LOCAL = 8


def _direct_stage(prob, base, free, scales, lower, upper, group, passive, broadening, config, coarse=False):
    """The reference: one stage by ``scipy.optimize.least_squares`` on scaled parameters."""
    from types import SimpleNamespace

    from scipy.optimize import least_squares

    def residual(p):
        full = base.copy()
        full[free] = base[free] + p * scales[free]
        ne = prob.normal(*stages.split(prob, full), group, broadening)
        return ne.weighted_residual(ne.solve(ne.rhs, passive))

    lo = (lower[free] - base[free]) / scales[free]
    hi = (upper[free] - base[free]) / scales[free]
    p0 = np.clip(np.zeros(free.sum()), lo + 1e-12, hi - 1e-12)
    tol = max(config.tolerance, 1e-4) if coarse else config.tolerance
    sol = least_squares(residual, p0, bounds=(lo, hi), method="trf", x_scale=1.0, max_nfev=config.max_nfev,
                        ftol=tol, xtol=tol, gtol=tol)
    new = base.copy()
    new[free] = base[free] + sol.x * scales[free]
    return new, SimpleNamespace(success=sol.status > 0, message=sol.message)


def _side_by_side(frames, first, second) -> tuple[float, float, float, int]:
    """Rank every frame with two variants (callables of pattern, cell and EGs), each twice,
    interleaved so that the machine's drift hits both: their mean seconds over the frames'
    runs, the largest |ΔB| of a candidate between them, and the frames on which they lead
    with the same EG."""
    times, worst, same_leader = [0.0, 0.0], 0.0, 0
    for pat, cell, local in frames:
        ranked = [None, None]
        for i in (1, 0, 1, 0):
            t0 = time.perf_counter()
            ranked[i] = (first, second)[i](pat, cell, local)
            times[i] += time.perf_counter() - t0
        a, b = ({c.eg: c.evidence.criterion for c in r.candidates} for r in ranked)
        worst = max([worst, *(abs(a[e] - b[e]) for e in b if e in a)])
        same_leader += ranked[0].best.eg == ranked[1].best.eg
    return times[0] / 2, times[1] / 2, worst, same_leader


def _lmfit_against_direct(frames, inst) -> None:
    def direct(pat, cell, local):
        engine = stages._stage
        stages._stage = _direct_stage
        try:
            return rank(pat, cell, local, inst)
        finally:
            stages._stage = engine

    lm, di, worst, _ = _side_by_side(frames, lambda *f: rank(*f, inst), direct)
    ratio = lm / di
    print(f"lmfit engine {lm:.2f} s, direct least_squares {di:.2f} s: "
          f"ratio {ratio:.2f} (goal <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}); "
          f"largest |ΔB| between them {worst:.2f}")


def _analytic_against_numeric(frames, inst) -> None:
    numeric = PawleyConfig(analytic_jacobian=False)
    an, nu, worst, same = _side_by_side(frames, lambda *f: rank(*f, inst),
                                        lambda *f: rank(*f, inst, config=numeric))
    print(f"analytic Jacobian {an:.2f} s, finite differences {nu:.2f} s: ratio {an / nu:.2f}; "
          f"largest |ΔB| between them {worst:.2f}; same leader on {same} of {len(frames)} frames")


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    inst = Instrument()
    local_t, full_t, frames = [], [], []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'SG':>4s} {'system':12s} {'local EGs':>9s} {'s':>7s} {'all EGs':>8s} {'s':>7s}")
    for sg, system in FRAMES:
        eg = sg_to_eg(sg)
        rec = random_record(rng, sg_number=sg, d_min=1.0)
        pat = simulate_pattern(rec, inst, rng, counts=1e4, background=(0.05,))
        cell = strain_cell(rec.cell, system, 0.005, rng)
        local = [eg, *neighbours(eg)][:MAX_LOCAL]
        family = extinction_group(eg).lattice_family
        full = [g.number for g in extinction_groups() if g.lattice_family == family]
        t0 = time.perf_counter()
        res_local = rank(pat, cell, local, inst)
        t1 = time.perf_counter()
        res_full = rank(pat, cell, full, inst)
        t2 = time.perf_counter()
        frames.append((pat, cell, local))
        local_t.append(t1 - t0)
        full_t.append(t2 - t1)
        print(
            f"{sg:4d} {system:12s} {len(res_local):9d} {t1 - t0:7.2f} {len(res_full):8d} {t2 - t1:7.2f}"
            f"   leader local {res_local.best.eg}, all {res_full.best.eg} (true {eg})",
            flush=True,
        )
    lm, fm = float(np.mean(local_t)), float(np.mean(full_t))
    print(
        f"mean seconds per frame: local set {lm:.2f} (max {max(local_t):.2f}), "
        f"all EGs of the system {fm:.2f} (max {max(full_t):.2f}); ratio all/local {fm / lm:.1f}"
    )
    print(f"goal < 5 s per frame for the local set: {'met' if max(local_t) < 5.0 else 'NOT met'}")
    _lmfit_against_direct(frames, inst)
    _analytic_against_numeric(frames, inst)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
