"""Seconds per frame of :func:`ratagent.refinement.rank`: DAG-local candidates vs every EG of the system.

For each frame (a simulated Cu Kα1/Kα2 pattern of a random structure, 10⁴ peak counts,
cell strained by up to 0.5 %): the local set is the true EG and its DAG neighbours,
at most 8 (what the agent fits per frame); the full set is every EG of the same lattice
family. Both are timed in the same run on the same frames. Goal (issue 6): < 5 s per frame
for the local set on 2 cores.

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
from ratagent.refinement import rank
from ratagent.simulation import random_record, simulate_pattern
from ratagent.simulation.lattice import strain_cell

#: (space group, crystal system) of the frames: one per lattice family with several EGs.
FRAMES = ((225, "cubic"), (88, "tetragonal"), (176, "hexagonal"), (62, "orthorhombic"), (14, "monoclinic"))
MAX_LOCAL = 8


def main(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    inst = Instrument()
    local_t, full_t = [], []
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


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
