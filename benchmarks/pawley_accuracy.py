"""Ranking accuracy of :func:`ratagent.refinement.rank` on simulated patterns (issue 6).

For each case: a crystal system (cycling through all seven), an EG of that system and one
of its space groups, a random structure (:func:`ratagent.simulation.random_record`),
a Cu Kα1/Kα2 pattern with Poisson noise (peak counts log-uniform in [100, 10⁵]) and a
Chebyshev background; the cell given to the fit is strained by up to 0.5 %; the
candidates are the true EG and its DAG neighbours (at most 8 in all). A case is correct
when the true EG is ranked first or lies in the reported indistinguishable set.

A failure is marked *pseudo-symmetric* when the simulated structure itself obeys the
leader's absences: every reflection of the record that the leader's setting forbids
has |F|² < 10⁻⁶ of the strongest (random structures with atoms only on special
positions can have more absences than their space group; the data then cannot show
the nominal EG, and the leader is the right reading of them).

A case is *manifest* when no other fitted candidate's absences are all obeyed by the
structure (the same |F|² test, before the fit's verdict is known): only then do the
data carry the nominal EG, and the accuracy is also printed over those cases.

Usage: ``python benchmarks/pawley_accuracy.py [n_cases] [seed]`` (default 210, 0);
prints a table per crystal system and the confusion of the failures.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict

import gemmi
import numpy as np

from ratagent.crystallography import (
    CRYSTAL_SYSTEMS,
    crystal_system,
    eg_to_sgs,
    extinction_groups,
    neighbours,
    systematically_absent,
)
from ratagent.instrument import Instrument
from ratagent.refinement import rank
from ratagent.simulation import random_record, simulate_pattern
from ratagent.simulation.lattice import strain_cell

MAX_CANDIDATES = 8


def draw_case(system: str, rng: np.random.Generator) -> tuple[int, int]:
    """(EG, space group) with the EG uniform among those with a member of ``system``."""
    egs = [g.number for g in extinction_groups() if any(crystal_system(s) == system for s in g.space_groups)]
    eg = int(rng.choice(egs))
    sgs = [s for s in eg_to_sgs(eg) if crystal_system(s) == system]
    return eg, int(rng.choice(sgs))


def _obeys(setting: str, rec) -> bool:
    """Whether the structure obeys every absence of ``setting``, and that forbids something."""
    forbid = systematically_absent(gemmi.find_spacegroup_by_name(setting), rec.hkl)
    return bool(forbid.any() and rec.f2[forbid].max(initial=0.0) < 1e-6 * rec.f2.max())


def main(n_cases: int = 210, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    inst = Instrument()
    rows = []
    for i in range(n_cases):
        system = CRYSTAL_SYSTEMS[i % len(CRYSTAL_SYSTEMS)]
        eg, sg = draw_case(system, rng)
        counts = float(10 ** rng.uniform(2, 5))
        rec = random_record(rng, sg_number=sg, d_min=1.0)
        pat = simulate_pattern(rec, inst, rng, counts=counts, background=(float(rng.uniform(0.02, 0.2)),))
        cell = strain_cell(rec.cell, system, 0.005, rng)
        cands = [eg, *[n for n in neighbours(eg) if n != eg]][:MAX_CANDIDATES]
        t0 = time.perf_counter()
        try:
            res = rank(pat, cell, cands, inst)
        except ValueError as err:
            rows.append((system, eg, sg, counts, None, False, False, 0.0, False, 0, True))
            print(f"{i:4d} {system:12s} EG {eg:2d} SG {sg:3d} ERROR {err}", flush=True)
            continue
        dt = time.perf_counter() - t0
        lead = res.best.eg
        first = lead == eg
        inset = eg in res.indistinguishable
        pseudo = not (first or inset) and _obeys(res.best.result.setting, rec)
        manifest = not any(c.eg != eg and _obeys(c.result.setting, rec) for c in res)
        rows.append((system, eg, sg, counts, lead, first, inset, dt, pseudo, len(res), manifest))
        print(
            f"{i:4d} {system:12s} EG {eg:2d} SG {sg:3d} counts {counts:8.0f} lead {lead:2d} "
            f"set {res.indistinguishable} ok={first or inset} pseudo={pseudo} manifest={manifest} "
            f"fitted={len(res)} {dt:.1f}s",
            flush=True,
        )
    print(
        "\nsystem        cases  first  first-or-in-set  fraction  pseudo-symmetric failures  "
        "manifest correct"
    )
    by = defaultdict(list)
    for r in rows:
        by[r[0]].append(r)
    for system in CRYSTAL_SYSTEMS:
        rs = by[system]
        good = sum(r[5] or r[6] for r in rs)
        ps = sum(r[8] for r in rs)
        man = [r for r in rs if r[10]]
        print(
            f"{system:12s} {len(rs):6d} {sum(r[5] for r in rs):6d} {good:16d}  {good / max(len(rs), 1):.3f}"
            f"  {ps:5d}  {sum(r[5] or r[6] for r in man):19d}/{len(man)}"
        )
    good = sum(r[5] or r[6] for r in rows)
    ps = sum(r[8] for r in rows)
    print(
        f"{'all':12s} {len(rows):6d} {sum(r[5] for r in rows):6d} {good:16d}  {good / len(rows):.3f}  {ps:5d}"
    )
    print(f"correct or pseudo-symmetric: {(good + ps) / len(rows):.3f}")
    man = [r for r in rows if r[10]]
    good_man = sum(r[5] or r[6] for r in man)
    print(
        f"manifest cases (no other candidate's absences obeyed by the structure): {len(man)}; "
        f"correct {good_man} = {good_man / max(len(man), 1):.3f}"
    )
    times = [r[7] for r in rows if r[4] is not None]
    print(f"seconds per case: median {np.median(times):.2f}, max {np.max(times):.2f}")
    fails = Counter((r[1], r[4], "pseudo" if r[8] else "") for r in rows if not (r[5] or r[6]))
    print(
        "confusion of the failures (true EG -> leader: count):",
        ", ".join(f"{a}->{b}{' (' + p + ')' if p else ''}: {n}" for (a, b, p), n in fails.most_common())
        or "none",
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
