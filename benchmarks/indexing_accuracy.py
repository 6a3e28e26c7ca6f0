"""End-to-end indexing accuracy: rendered patterns → :func:`find_peaks` → :func:`index` (issue 9).

Simulated mode (default): per lattice system, ``--n`` random structures of the structure
bank (:func:`ratagent.simulation.random_record`, space group uniform among those of the
system, hexagonal and trigonal together) rendered by
:func:`ratagent.simulation.simulate_pattern` on a Cu Kα1/Kα2 tube, 2θ 5–90°, 0.01°, with

* Caglioti U, V, W and Lorentzian X, Y scaled by a random factor in [0.7, 1.5],
* a zero shift uniform in ±0.05° (``--zero-shift``), no sample displacement (the indexing
  refines only a zero shift, so a displacement would bias the cell beyond the 0.1 %
  criterion),
* Poisson noise with the strongest point at 10^U(3, 5) counts, a Chebyshev background
  of 2–20 % of it,
* a 3 % impurity: another random structure of any space group.

Two truths are reported.

* The atoms' lattice (:func:`actual_lattice`, spglib at 10⁻³ Å): a random structure whose
  atoms all sit on special positions may repeat on a finer lattice, or be centred, where
  its nominal space group is not; then every reflection of the nominal cell beyond that
  lattice has F = 0 exactly. ``finer`` counts those cases.
* The pattern's lattice (:func:`visible_lattice`): the finest lattice whose reflections
  account for every *visible* reflection of the phase (M |F|² LP ≥ 1 % of the strongest,
  up to its 20th visible line). It differs from the atoms' lattice when every reflection
  beyond a finer lattice is weaker than 1 % (``pseudo``: atoms near, not on, special
  positions). A 3 % impurity puts its own lines at 0.3–3 % of the strongest, so no
  method can tell such lines from the impurity's: the pattern shows the finer lattice.

A case is a hit when a cell among the first three candidates is the true lattice (up to
equivalence: :func:`ratagent.indexing.same_lattice`, 0.1 % on d); it is declined when
indexing finds no convincing cell. Prints, per system, cases; top-3 and top-1 hits on the
atoms' lattice (``top-3``, ``top-1``) and on the pattern's (``pattern``, ``p-top-1``);
top-3 hits on the conventional cell of the atoms' lattice whatever its centring
(``axes``: the indexing reports the true axes with the centring the lines show, and the
agent, which takes the axes and tests the centrings as extinction groups, uses the right
cell); top-3 hits counting a subcell of the atoms' lattice that indexes every observed
line of the phase (``+subcell``, whatever the intensity of the lines it leaves out);
declined; ``finer``; ``pseudo``; ``few`` (cases whose phase has fewer visible lines than
the lattice system needs, :func:`visible_lines`: no method can index them); pattern hits
among the other cases (``pattern|enough``); ``short`` (cases whose pattern's lattice has a
translation shorter than :data:`SHORT_TRANSLATION`, 2.2 Å, which no element's lattice
has: the generator bounds distances between atoms, not cell axes, at 1.6 Å); pattern hits
among the cases neither few nor short (``p|usual``); cases with a cell among the first
three that its lines in the residual profile put there
(:func:`ratagent.indexing.supercells.profile_supercell`: ``profile``), and how many of
those cells are the pattern's lattice (``prof ok``); and seconds per pattern (wall and
process CPU) of peak search and indexing. Each miss is printed with its label: ``pattern`` (the
pattern's lattice found, not the atoms'), ``axes``, ``subcell`` or ``MISS``. ``--jobs N``
runs the cases in N processes (one thread each); the figures do not depend on it, the
seconds do.

RRUFF mode (``--rruff``): the 454 measured patterns of ``data/rruff_dev.npz`` (Cu Kα,
2θ 5–90°, Kα2 present), peak search with the Cu Kα2 line stripped; reports how often the
best convincing cell has the lattice system of the labelled space group (trigonal groups
on hexagonal axes count as hexagonal lattices; rhombohedral ones as either hexagonal or
rhombohedral), how often indexing declines, and seconds per pattern, with binomial 95 %
intervals; ``--half A`` or ``--half B`` takes one fixed half of the dev set
(``training/data/rruff_dev_split.csv``): rules are tuned on one half and reported on the other.

    python benchmarks/indexing_accuracy.py [--n 100] [--seed 0] [--systems cubic ...] [--jobs 2]
    python benchmarks/indexing_accuracy.py --rruff [--half A|B] [--limit N] [--jobs 2]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from pathlib import Path

import gemmi
import numpy as np

from ratagent.crystallography import crystal_system
from ratagent.indexing import find_peaks, index, lines_from_cell, same_lattice
from ratagent.indexing.reduction import cell_volume, lattice_q_values, niggli_cell
from ratagent.indexing.refine import min_lines
from ratagent.instrument import Instrument
from ratagent.patterns import CU_KA1_ANGSTROM, Pattern
from training.devsplit import dev_split
from training.pipeline import wilson

log = logging.getLogger("indexing_accuracy")

#: Systems reported, and the crystal systems of space groups drawn for each.
SYSTEMS = {
    "cubic": ("cubic",),
    "tetragonal": ("tetragonal",),
    "hexagonal": ("hexagonal", "trigonal"),
    "orthorhombic": ("orthorhombic",),
    "monoclinic": ("monoclinic",),
    "triclinic": ("triclinic",),
}
#: Lattice systems a space group's lattice may be indexed as (by crystal system).
_LATTICE_OK = {
    "cubic": {"cubic"},
    "tetragonal": {"tetragonal"},
    "hexagonal": {"hexagonal"},
    "trigonal": {"hexagonal", "trigonal"},
    "orthorhombic": {"orthorhombic"},
    "monoclinic": {"monoclinic"},
    "triclinic": {"triclinic"},
}
#: Lattice system of a crystal system.
_LATTICE_SYSTEM = {
    "cubic": "cubic",
    "tetragonal": "tetragonal",
    "hexagonal": "hexagonal",
    "trigonal": "hexagonal",
    "orthorhombic": "orthorhombic",
    "monoclinic": "monoclinic",
    "triclinic": "triclinic",
}
_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R": 3}
#: Half-width of the uniform zero shift of the simulated patterns, degrees of 2θ (``--zero-shift``).
ZERO_SHIFT_DEG = 0.05
_DEFAULT_RRUFF = Path(__file__).resolve().parents[1] / "training" / "data" / "rruff_dev.npz"


def _space_groups(systems: tuple[str, ...]) -> list[int]:
    return [s for s in range(1, 231) if crystal_system(s) in systems]


def _instrument(rng: np.random.Generator, zero_deg: float = ZERO_SHIFT_DEG) -> Instrument:
    base = Instrument()
    f = float(rng.uniform(0.7, 1.5))
    return base.with_(
        u_deg2=base.u_deg2 * f,
        v_deg2=base.v_deg2 * f,
        w_deg2=base.w_deg2 * f,
        x_deg=base.x_deg * f,
        y_deg=base.y_deg * f,
        zero_shift_deg=float(rng.uniform(-zero_deg, zero_deg)),
    )


def case(seed: int, system: str, i: int) -> tuple[int, object, Instrument, Pattern]:
    """Case ``i`` of ``system``: (space group, record, instrument, pattern); its own random stream."""
    sg, rec, _, inst, pat = _case(seed, system, i)
    return sg, rec, inst, pat


def _case(seed: int, system: str, i: int, zero_deg: float = ZERO_SHIFT_DEG):
    """Case ``i`` with its crystal: (space group, record, crystal, instrument, pattern);
    its zero shift uniform in ±``zero_deg``."""
    from ratagent.simulation import simulate_pattern
    from ratagent.simulation.bank import random_record
    from ratagent.simulation.reflections import reflection_list
    from ratagent.simulation.structures import random_crystal

    rng = np.random.default_rng([seed, list(SYSTEMS).index(system), i])
    sg = int(rng.choice(_space_groups(SYSTEMS[system])))
    crystal = random_crystal(sg, rng)  # what random_record(rng, sg_number=sg) draws
    rec = reflection_list(crystal, 1.0, name="random")
    imp = random_record(rng, d_min=1.0)
    inst = _instrument(rng, zero_deg)
    pat = simulate_pattern(
        rec,
        inst,
        rng,
        counts=float(10 ** rng.uniform(3, 5)),
        background=(float(rng.uniform(0.02, 0.2)),),
        impurity=imp,
        impurity_fraction=0.03,
    )
    return sg, rec, crystal, inst, pat


def actual_lattice(crystal, symprec: float = 1e-3) -> tuple[np.ndarray, str, int]:
    """The lattice the atoms really have: (conventional cell, centring, space group) by spglib.

    A random structure whose atoms all sit on special positions can repeat on a finer
    lattice than its nominal space group's, or be centred where the group is primitive:
    same element, same B, same position shifted by a lattice-like translation. Every
    reflection of the nominal cell beyond the finer lattice's then has F = 0 exactly, so the
    pattern defines the finer lattice, and that is the cell to find. ``symprec`` (Å) is far
    below the 0.1 % cell criterion; near-repeats beyond it stay failures (``+subcell``).
    """
    import spglib

    uc = gemmi.UnitCell(*crystal.cell)
    lattice = np.array(uc.orth.mat.tolist()).T  # rows a, b, c
    numbers = [gemmi.Element(e).atomic_number for e in crystal.elements]
    data = spglib.get_symmetry_dataset((lattice, np.asarray(crystal.frac), numbers), symprec=symprec)
    if data is None:
        raise RuntimeError(f"spglib found no symmetry for a crystal of space group {crystal.sg_number}")
    v = np.asarray(data.std_lattice, float)
    lengths = np.linalg.norm(v, axis=1)
    angles = [
        np.degrees(np.arccos(np.dot(v[j], v[k]) / (lengths[j] * lengths[k])))
        for j, k in ((1, 2), (0, 2), (0, 1))
    ]
    centring = gemmi.find_spacegroup_by_number(int(data.number)).centring_type()
    return np.concatenate([lengths, angles]), centring, int(data.number)


#: Lines weaker than this fraction of the strongest (M |F|² LP) are not counted as visible.
_VISIBLE = 0.01


def _intensities(rec, inst: Instrument) -> tuple[np.ndarray, np.ndarray]:
    """2θ (degrees) and M |F|² LP relative to the strongest, of each reflection of ``rec``."""
    d = np.asarray(rec.d, float)
    s = np.clip(inst.wavelength / (2 * d), 0, 1)
    tth = 2 * np.degrees(np.arcsin(s))
    th = np.radians(tth / 2)
    lp = (1 + np.cos(2 * th) ** 2) / (np.sin(th) ** 2 * np.cos(th))
    inten = np.asarray(rec.multiplicity, float) * np.asarray(rec.f2, float) * lp
    return tth, inten / inten.max()


def _integer_row_basis(rows: np.ndarray) -> np.ndarray:
    """A basis (echelon rows) of the integer span of ``rows`` (n, 3), by Euclid's row reduction."""
    h = np.array(rows, dtype=np.int64)
    basis = []
    for col in range(3):
        while True:
            nz = np.nonzero(h[:, col])[0]
            if len(nz) == 0:
                break
            p = nz[np.argmin(np.abs(h[nz, col]))]
            others = nz[nz != p]
            if len(others) == 0:
                basis.append(h[p].copy())
                h = np.delete(h, p, axis=0)
                break
            h[others] -= (h[others, col] // h[p, col])[:, None] * h[p]
    return np.array(basis, dtype=np.int64).reshape(-1, 3)


def visible_lattice(rec, crystal, inst: Instrument, n_lines: int = 20) -> tuple[np.ndarray, int] | None:
    """The lattice the visible lines define: (primitive cell, index in the nominal lattice).

    Indexing sees lines, not atoms. The reflections of the phase that are *visible* (M |F|²
    LP ≥ 1 % of the strongest, as in :func:`visible_lines`) up to its ``n_lines``-th
    visible line (the lines an indexing of the first ~20 lines has; all visible lines of
    the reflection list, to d = 1 Å or 2θ ≈ 101° with Cu Kα1, when there are fewer) have
    hkl vectors, symmetry equivalents included, whose integer span is a sublattice of the
    nominal reciprocal lattice; its dual is the finest real lattice whose reflections
    account for every visible line. When the span has index k > 1, every reflection
    outside it, up to there, is weaker than 1 % (a pseudo-symmetric structure, or F = 0
    exactly as in
    :func:`actual_lattice`), the pattern shows only that finer lattice, and among the lines
    of a 3 % impurity (0.3–3 % of the strongest) no method can tell such lines from the
    impurity's. Returns ``None`` when the visible lines span fewer than three dimensions.
    """
    tth, rel = _intensities(rec, inst)
    vis = rel >= _VISIBLE
    t = np.sort(tth[vis])
    distinct = t[np.concatenate([[True], np.diff(t) > 0.05])]
    t_max = distinct[min(n_lines, len(distinct)) - 1] + 1e-6 if len(distinct) else 0.0
    hkl = np.asarray(rec.hkl, np.int64)[vis & (tth <= t_max)]
    ops = gemmi.symops_from_hall(crystal.hall)
    rots = {tuple(map(tuple, op.rot)) for op in ops.sym_ops}
    equiv = np.concatenate([hkl @ (np.array(r, np.int64) // gemmi.Op.DEN) for r in rots])
    basis = _integer_row_basis(equiv)
    if len(basis) < 3:
        return None
    k = int(round(abs(np.linalg.det(basis.astype(float)))))
    orth = np.array(gemmi.UnitCell(*crystal.cell).orth.mat.tolist()).T  # rows a, b, c
    v = np.linalg.inv(basis.astype(float)).T @ orth  # real basis dual to the span
    lengths = np.linalg.norm(v, axis=1)
    angles = [
        np.degrees(np.arccos(np.dot(v[j], v[m]) / (lengths[j] * lengths[m])))
        for j, m in ((1, 2), (0, 2), (0, 1))
    ]
    return np.concatenate([lengths, angles]), k


def _main_phase(peaks, cell: np.ndarray, sg: int, inst: Instrument, n_lines: int = 20) -> np.ndarray:
    """Which of the first ``n_lines`` peaks lie within 0.02° of an allowed line of the phase."""
    tth = np.sort(peaks.two_theta)[:n_lines]
    true = lines_from_cell(cell, sg, inst.wavelength, merge_deg=0.0) + inst.zero_shift_deg
    return np.abs(tth[:, None] - true[None, :]).min(axis=1) <= 0.02


def _is_subcell(cand, cell: np.ndarray, centring: str, main: np.ndarray) -> bool:
    """Whether ``cand`` is a subcell of the true lattice that indexes every line of the phase.

    A pseudo-symmetric structure, whose atoms nearly repeat on a finer lattice, has only
    weak or no lines of the true cell beyond the subcell's; then the subcell is all the
    pattern shows. Tested on powder lines: every q of the candidate's lattice (up to its
    40th) is a q of the true lattice within 0.2 %, and the candidate indexes all the
    lines used (``main``: (N,) bool) that lie on a line of the true phase.
    """
    if len(main) != len(cand.indexed) or np.any(main & ~cand.indexed):
        return False
    v_true = cell_volume(cell) / _POINTS[centring]
    v_cand = cand.volume / _POINTS[cand.centring]
    ratio = v_true / v_cand
    if ratio < 1.5 or abs(ratio - round(ratio)) > 0.05 * ratio:
        return False
    q_cand = np.unique(np.round(lattice_q_values(cand.cell, 40, cand.centring), 8))
    q_true = lattice_q_values(cell, 40 * int(round(ratio)) + 40, centring)
    near = np.abs(q_cand[:, None] - q_true[None, q_true <= q_cand[-1] * 1.01]).min(axis=1)
    return bool(np.all(near <= 2e-3 * q_cand))


def visible_lines(rec, inst: Instrument, two_theta_max: float = 90.0, merge_deg: float = 0.05) -> int:
    """Distinct 2θ positions of the main phase with M |F|² LP ≥ 1 % of the strongest.

    Counted from the structure, independently of the peak search: a pattern with fewer
    such lines than the lattice system has unknowns + 3 (:func:`min_lines`: cubic 4,
    tetragonal and hexagonal 5, orthorhombic 6, monoclinic 7) cannot be indexed by any
    method, e.g. a 2.2 Å primitive cubic cell has three lines below 90° with Cu Kα.
    """
    tth, rel = _intensities(rec, inst)
    keep = (tth <= two_theta_max) & (rel >= _VISIBLE)
    t = np.sort(tth[keep])
    return int(np.count_nonzero(np.diff(t) > merge_deg) + 1) if len(t) else 0


def _case_line(system: str, i: int, sg: int, cell: np.ndarray, hit: str, res, dt: float, actual: int) -> str:
    a, b, c, al, be, ga = cell
    line = (
        f"{system:12s} {i:3d} SG {sg:3d} (atoms: {actual:3d}) {hit:7s} "
        f"{'convincing' if res.convincing else 'declined':10s} {dt:5.1f}s  "
        f"true {a:.3f} {b:.3f} {c:.3f} {al:.1f} {be:.1f} {ga:.1f}"
    )
    if hit != "hit" and res.candidates:
        line += f"\n    got: {res.candidates[0].describe()}"
    return line


def _run_case(
    seed: int, system: str, i: int, zero_deg: float = ZERO_SHIFT_DEG
) -> tuple[dict[str, float], str | None]:
    """One simulated case: its table entries and, for a miss, a line to print."""
    sg, rec, crystal, inst, pat = _case(seed, system, i, zero_deg)
    cell, centring, sg_actual = actual_lattice(crystal)
    nominal = cell_volume(rec.cell) / _POINTS[gemmi.find_spacegroup_by_number(sg).centring_type()]
    finer = cell_volume(cell) / _POINTS[centring] < 0.99 * nominal
    vis = visible_lattice(rec, crystal, inst)
    # the pattern's lattice: the visible lines' when it is finer than the atoms' one
    pseudo = vis is not None and cell_volume(vis[0]) < 0.99 * cell_volume(cell) / _POINTS[centring]
    seen_cell, seen_centring = (vis[0], "P") if pseudo else (cell, centring)
    lattice_system = _LATTICE_SYSTEM[crystal_system(sg_actual)]
    few = visible_lines(rec, inst) < min_lines(lattice_system)
    # the Niggli cell's a is the lattice's shortest translation
    short = float(niggli_cell(seen_cell, seen_centring)[0]) < SHORT_TRANSLATION
    t0, c0 = time.perf_counter(), time.process_time()
    peaks = find_peaks(pat, instrument=inst)
    res = index(peaks)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    hits = [same_lattice(c.cell, cell, 1e-3, c.centring, centring) for c in res.top(3)]
    seen = [same_lattice(c.cell, seen_cell, 1e-3, c.centring, seen_centring) for c in res.top(3)]
    # cells promoted by their lines in the residual profile (supercells.profile_supercell)
    profiled = [c.profile_chance is not None for c in res.top(3)]
    axes = any(hits) or any(same_lattice(c.cell, cell, 1e-3, "P", "P") for c in res.top(3))
    main = _main_phase(peaks, rec.cell, sg, inst)
    sub = any(hits) or any(_is_subcell(c, cell, centring, main) for c in res.top(3))
    row = {
        "top3": any(hits),
        "top1": bool(hits and hits[0]),
        "axes": axes,
        "sub": sub,
        "seen3": any(seen),
        "seen1": bool(seen and seen[0]),
        "declined": not res.convincing,
        "finer": finer,
        "pseudo": pseudo,
        "few": few,
        "short": short,
        "profile": any(profiled),
        "profile_ok": any(p and s for p, s in zip(profiled, seen, strict=True)),
        "wall": dt,
        "cpu": dc,
    }
    line = None
    if not any(seen) or not any(hits):
        if any(seen):
            hit = "pattern"  # the visible lattice was found: no line of the atoms' one shows
        else:
            hit = "axes" if axes else "subcell" if sub else "MISS"
        line = _case_line(system, i, sg, cell, hit, res, dt, sg_actual)
    return row, line


#: A lattice translation shorter than this (Å) is ``short``: below any element's (Be, hcp,
#: a = 2.29 Å, is the shortest), but the structure generator's distance bound (1.6 Å)
#: applies to atoms, so a cell axis of 1.6 Å occurs.
SHORT_TRANSLATION = 2.2

_LIMITS: list[object] = []


def _init_worker() -> None:
    """One thread per worker process (torch and the BLAS): the processes share the cores."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    _LIMITS.append(threadpool_limits(1))


def simulated(n: int, seed: int, systems: list[str], verbose: bool, jobs: int = 1,
              zero_deg: float = ZERO_SHIFT_DEG) -> None:
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    tasks = [(seed, system, i, zero_deg) for system in systems for i in range(n)]
    for (_, system, i, _), (row, line) in zip(tasks, _map(_run_case, tasks, jobs), strict=True):
        rows[system].append(row)
        if line is not None or verbose:
            print(line or f"{system:12s} {i:3d} hit", flush=True)
    cols = (
        ("cases", 5),
        ("top-3", 7),
        ("top-1", 7),
        ("pattern", 8),
        ("p-top-1", 8),
        ("axes", 7),
        ("+subcell", 9),
        ("declined", 9),
        ("finer", 6),
        ("pseudo", 7),
        ("few", 4),
        ("pattern|enough", 15),
        ("short", 6),
        ("p|usual", 8),
        ("profile", 8),
        ("prof ok", 8),
        ("s/pattern", 10),
        ("max s", 7),
        ("cpu s", 7),
    )
    print("\n" + f"{'system':13s}" + " ".join(f"{c:>{w}s}" for c, w in cols))
    for system in systems:
        r = {k: np.array([row[k] for row in rows[system]], dtype=float) for k in rows[system][0]}
        enough = r["seen3"][r["few"] == 0]
        usual = r["seen3"][(r["few"] == 0) & (r["short"] == 0)]
        values = (
            f"{len(r['top3']):5d}",
            f"{r['top3'].mean():7.1%}",
            f"{r['top1'].mean():7.1%}",
            f"{r['seen3'].mean():8.1%}",
            f"{r['seen1'].mean():8.1%}",
            f"{r['axes'].mean():7.1%}",
            f"{r['sub'].mean():9.1%}",
            f"{r['declined'].mean():9.1%}",
            f"{int(r['finer'].sum()):6d}",
            f"{int(r['pseudo'].sum()):7d}",
            f"{int(r['few'].sum()):4d}",
            f"{enough.mean() if len(enough) else float('nan'):15.1%}",
            f"{int(r['short'].sum()):6d}",
            f"{usual.mean() if len(usual) else float('nan'):8.1%}",
            f"{int(r['profile'].sum()):8d}",
            f"{int(r['profile_ok'].sum()):8d}",
            f"{r['wall'].mean():10.2f}",
            f"{r['wall'].max():7.1f}",
            f"{r['cpu'].mean():7.2f}",
        )
        print(f"{system:13s}" + " ".join(values))


def _rruff_case(path: Path, i: int) -> tuple[str, tuple[bool, bool, float], str]:
    """Measured pattern ``i``: its crystal system, (right, declined, seconds) and a line."""
    data = np.load(path)
    tth = np.asarray(data["two_theta"], dtype=float)
    sg = int(data["space_group"][i])
    system = crystal_system(sg)
    y = np.maximum(np.asarray(data["intensity"][i], dtype=float), 0.0)
    inst = Instrument()  # Cu Kα1/Kα2, ratio 0.5: stripped before the search
    t0 = time.perf_counter()
    try:
        res = index(find_peaks(Pattern(tth, y, CU_KA1_ANGSTROM), instrument=inst))
    except ValueError as err:
        log.warning("pattern %d: %s", i, err)
        return system, (False, True, time.perf_counter() - t0), f"{i:3d} SG {sg:3d} {system:12s} error: {err}"
    dt = time.perf_counter() - t0
    right = res.convincing and res.best.crystal_system in _LATTICE_OK[system]
    got = res.best.describe() if res.best is not None else res.message
    return (
        system,
        (right, not res.convincing, dt),
        f"{i:3d} SG {sg:3d} {system:12s} {'ok' if right else '--'} {dt:5.1f}s {got}",
    )


def _map(fn, tasks: list[tuple], jobs: int):
    """``fn(*task)`` for each task, in order; in ``jobs`` processes of one thread each when > 1."""
    if jobs <= 1:
        yield from (fn(*t) for t in tasks)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool:
        yield from pool.map(fn, *zip(*tasks, strict=True))


def rruff(path: Path, limit: int | None, verbose: bool, jobs: int = 1, half: str | None = None) -> None:
    n_all = len(np.load(path)["space_group"])
    cases = list(range(n_all))
    if half is not None:
        cases = [i for i, h in enumerate(dev_split()) if h == half]
    cases = cases if limit is None else cases[:limit]
    by: dict[str, list[tuple[bool, bool, float]]] = defaultdict(list)
    for system, row, line in _map(_rruff_case, [(path, i) for i in cases], jobs):
        by[system].append(row)
        if verbose:
            print(line, flush=True)
    print(
        f"\n{'system':13s} {'cases':>5s} {'right system':>13s} {'declined':>9s} "
        f"{'right | convincing':>19s} {'s/pattern':>10s}"
    )
    total = []
    for system in ("cubic", "tetragonal", "hexagonal", "trigonal", "orthorhombic", "monoclinic", "triclinic"):
        if not by[system]:
            continue
        r = np.array(by[system], dtype=float)
        total.append(r)
        conv = r[r[:, 1] == 0]
        rc = conv[:, 0].mean() if len(conv) else float("nan")
        print(
            f"{system:13s} {len(r):5d} {r[:, 0].mean():13.1%} {r[:, 1].mean():9.1%} {rc:19.1%} "
            f"{r[:, 2].mean():10.2f}"
        )
    r = np.concatenate(total)
    conv = r[r[:, 1] == 0]
    print(
        f"{'all':13s} {len(r):5d} {r[:, 0].mean():13.1%} {r[:, 1].mean():9.1%} "
        f"{conv[:, 0].mean() if len(conv) else float('nan'):19.1%} {r[:, 2].mean():10.2f}"
    )
    lo, hi = wilson(int(r[:, 0].sum()), len(r))
    print(f"right system {int(r[:, 0].sum())}/{len(r)}: {r[:, 0].mean():.1%} [{lo:.1%}, {hi:.1%}] (95 %)")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="patterns per lattice system")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--rruff", action="store_true", help="measured RRUFF patterns instead")
    ap.add_argument("--data", type=Path, default=_DEFAULT_RRUFF)
    ap.add_argument("--limit", type=int, default=None, help="first N RRUFF patterns only")
    ap.add_argument("--half", choices=("A", "B"), default=None, help="one fixed half of the dev set")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    ap.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    ap.add_argument("--zero-shift", type=float, default=ZERO_SHIFT_DEG,
                    help="simulated zero shifts are uniform in ± this, degrees of 2θ")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.rruff:
        rruff(args.data, args.limit, args.verbose, args.jobs, args.half)
    else:
        simulated(args.n, args.seed, args.systems, args.verbose, args.jobs, args.zero_shift)


if __name__ == "__main__":
    main()
