"""The trial screen's line count against a brute-force enumeration of every hkl."""

from __future__ import annotations

import numpy as np
import pytest

from ratagent.indexing.refine import inv_d2_of_two_theta, inv_d2_slope
from ratagent.indexing.trials import SYSTEMS, _count, descent_trials, monomials, solve_trials
from ratagent.patterns import CU_KA1_ANGSTROM

CELLS = {
    "cubic": (5.43, 5.43, 5.43, 90, 90, 90),
    "tetragonal": (4.59, 4.59, 2.96, 90, 90, 90),
    "hexagonal": (4.91, 4.91, 5.41, 90, 90, 120),
    "orthorhombic": (4.96, 7.97, 5.74, 90, 90, 90),
    "monoclinic": (6.28, 15.21, 5.68, 90, 114.1, 90),
}


def _brute_force(name: str, p: np.ndarray, q_obs: np.ndarray, tol_q: np.ndarray) -> np.ndarray:
    """Lines within tol_q of some q(hkl), |h|, |k|, |l| ≤ 14, in float64."""
    r = np.arange(-14, 15)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    rows = monomials(hkl[np.any(hkl != 0, axis=1)]) @ SYSTEMS[name].matrix
    out = np.empty(len(p), dtype=int)
    for i, pi in enumerate(p):
        qc = np.sort(rows @ pi)
        j = np.clip(np.searchsorted(qc, q_obs), 1, len(qc) - 1)
        d = np.minimum(np.abs(qc[j] - q_obs), np.abs(qc[j - 1] - q_obs))
        out[i] = int(np.count_nonzero(d <= tol_q))
    return out


@pytest.mark.parametrize("name", list(CELLS))
def test_count_matches_every_hkl(name):
    """Random trials from the lines of a real cell, counted on 12 lines: the screen's
    count (a few (h, k) terms per trial, one root of the quadratic in l, float32) agrees
    with trying every hkl but where a line sits within float32 rounding of the window."""
    from ratagent.indexing import lines_from_cell

    tth = lines_from_cell(CELLS[name], 1, CU_KA1_ANGSTROM)[:12]
    q, tol = inv_d2_of_two_theta(tth, CU_KA1_ANGSTROM), inv_d2_slope(tth, CU_KA1_ANGSTROM) * 0.06
    p = solve_trials(name, q)
    p = p[np.all(p[:, :3] > 0.004, axis=1)]  # axes below 16 Å
    p = np.random.default_rng(0).permutation(p)[:400]
    n_fast, _ = _count(name, p, q, tol)
    n_slow = _brute_force(name, p, q, tol)
    assert len(p) >= 5
    assert np.mean(n_fast == n_slow) >= 0.99, np.flatnonzero(n_fast != n_slow)
    assert np.max(n_fast) == len(q)  # the true cell (or an equivalent) is among the trials


def test_descent_trials_break_the_tetragonal_symmetry_with_one_line():
    """An orthorhombic cell near a tetragonal one (a = 4.86, b = 5.00 Å): its 00l and hhl
    lines give a tetragonal cell with 1/a_t² = (1/a² + 1/b²) / 2, and one line that
    tells a from b (021) moves it onto the orthorhombic cell."""
    a, b, c = 4.86, 5.00, 12.2
    true = np.array([1 / a**2, 1 / b**2, 1 / c**2])
    p_tetragonal = np.array([[(1 / a**2 + 1 / b**2) / 2, 1 / c**2]])
    lines = np.array([1 / c**2, 2 * p_tetragonal[0, 0], 4 / b**2 + 1 / c**2])  # 001, 110, 021
    trials = descent_trials("tetragonal", "orthorhombic", p_tetragonal, lines)
    assert np.abs(trials / true - 1).max(axis=1).min() < 1e-5  # trials are rounded to 1e-8 Å⁻²
    assert np.all(trials > 0)
    # the tetragonal lines alone leave it where it was
    alone = descent_trials("tetragonal", "orthorhombic", p_tetragonal, lines[:2])
    assert np.abs(alone / true - 1).max(axis=1).min() > 1e-3


def test_zone_seeds_and_one_line_give_the_tetragonal_cell():
    """From hk0 lines alone (the zone of a only) and one line with l ≠ 0, the zone trials
    reach a = 5.35, c = 3.20 Å."""
    from ratagent.indexing.trials import in_zone, line_trials, zone_seeds

    a, c = 5.35, 3.20
    true = np.array([1 / a**2, 1 / c**2])
    hk0 = np.array([1, 2, 4, 5, 8]) / a**2
    seeds = zone_seeds("tetragonal", 0, hk0)
    assert np.any(np.isclose(seeds[:, 0], 1 / a**2, rtol=1e-9)) and np.all(seeds[:, 1] == 0)
    # screened as cells of the zone: no line leaves it
    assert np.all(in_zone("tetragonal", 0, seeds, hk0[-1])[:, 1] > 10 * hk0[-1])
    trials = line_trials("tetragonal", seeds, np.array([0.0, 1.0]), np.array([1 / a**2 + 1 / c**2]))  # 101
    assert np.abs(trials / true - 1).max(axis=1).min() < 1e-5


def test_triclinic_count_matches_every_hkl():
    """The zone-pair trials of kyanite's lines (P-1, Winter & Ghose 1979): the screen's count
    with the kl F term agrees with every hkl, and some trial indexes all 12 lines."""
    from ratagent.indexing import lines_from_cell
    from ratagent.indexing.triclinic import triclinic_trials

    tth = lines_from_cell((7.1262, 7.8520, 5.5724, 89.99, 101.11, 106.03), 2, CU_KA1_ANGSTROM)[:12]
    q, tol = inv_d2_of_two_theta(tth, CU_KA1_ANGSTROM), inv_d2_slope(tth, CU_KA1_ANGSTROM) * 0.06
    p = triclinic_trials(q, tol)
    assert np.any(p[:, 5] != 0)
    p = p[np.all(p[:, :3] > 0.004, axis=1)]
    p = np.random.default_rng(0).permutation(p)[:400]
    n_fast, _ = _count("triclinic", p, q, tol)
    n_slow = _brute_force("triclinic", p, q, tol)
    assert np.mean(n_fast == n_slow) >= 0.99, np.flatnonzero(n_fast != n_slow)
    full = triclinic_trials(q, tol)
    assert np.max(_count("triclinic", full, q, tol)[0]) == len(q)


@pytest.mark.parametrize("name", [*CELLS, "triclinic"])
def test_compiled_count_equals_the_numpy_count_and_gives_up_only_failed_trials(name):
    """The compiled count gives the numpy count, trial for trial; with ``max_missing`` it
    stops only trials that leave more lines unindexed (the screen drops those)."""
    pytest.importorskip("numba")
    from ratagent.indexing import lines_from_cell
    from ratagent.indexing.trials import _count_numpy
    from ratagent.indexing.triclinic import triclinic_trials

    cell = CELLS.get(name, (7.1262, 7.8520, 5.5724, 89.99, 101.11, 106.03))  # kyanite for triclinic
    tth = lines_from_cell(cell, 1, CU_KA1_ANGSTROM)[:12]
    q, tol = inv_d2_of_two_theta(tth, CU_KA1_ANGSTROM), inv_d2_slope(tth, CU_KA1_ANGSTROM) * 0.06
    p = triclinic_trials(q, tol) if name == "triclinic" else solve_trials(name, q)
    p = np.random.default_rng(1).permutation(p[np.all(p[:, :3] > 0.004, axis=1)])[:600]
    n_np, err_np = _count_numpy(name, p, q, tol)
    n_c, err_c = _count(name, p, q, tol)
    assert np.array_equal(n_np, n_c)
    assert np.allclose(err_np, err_c, rtol=1e-5, atol=1e-5)
    n_stop, _ = _count(name, p, q, tol, max_missing=2)
    passed = n_np >= len(q) - 2
    assert np.array_equal(n_stop[passed], n_np[passed]) and np.all(n_stop[~passed] < len(q) - 2)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("cell", [CELLS["monoclinic"], (5.13, 7.76, 9.42, 82.4, 71.9, 69.6)])
def test_reflections_of_form_lists_one_of_each_friedel_pair(cell, compiled, monkeypatch):
    """Every q(hkl) ≤ q_max of the form once per pair hkl, h̄k̄l̄ (a monoclinic and a
    triclinic cell), against every hkl of a box, in float64, compiled and in numpy; the
    box kept between calls gives the same list as one built afresh."""
    from ratagent.indexing import refine
    from ratagent.indexing.reduction import form_from_cell
    from ratagent.indexing.refine import reflections_of_form

    if not compiled:
        monkeypatch.setattr(refine, "enumerate_reflections", None)

    full = form_from_cell(cell)
    q_max = 0.45
    r = np.arange(-14, 15)
    box = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    q_all = monomials(box) @ full
    expected = np.sort(q_all[(q_all > 0) & (q_all <= q_max)])
    hkl, q = reflections_of_form(full, q_max)
    np.testing.assert_allclose(np.repeat(q, 2), expected, rtol=1e-12)
    assert np.all(np.diff(q) >= 0)
    first = hkl[np.arange(len(hkl)), np.argmax(hkl != 0, axis=1)]
    assert np.all(first > 0)  # h̄k̄l̄ of a listed hkl is not listed
    grid: list = []
    reflections_of_form(full * 0.8, q_max, grid)  # a larger box first
    hkl2, q2 = reflections_of_form(full, q_max, grid)
    np.testing.assert_array_equal(hkl2, hkl)
    np.testing.assert_array_equal(q2, q)


def test_compiled_reflections_agree_with_numpy(monkeypatch):
    """The compiled box walk lists the reflections numpy's box lists, with the same q to
    the last few bits (its sum runs in another order than the matrix product's), on
    random cells of every lattice system."""
    from ratagent.indexing import refine
    from ratagent.indexing.reduction import form_from_cell

    assert refine.enumerate_reflections is not None  # numba is a dependency
    rng = np.random.default_rng(7)
    for i in range(60):
        abc = rng.uniform(2.0, 25.0, 3)
        angles = [(90, 90, 90), (90, rng.uniform(90, 125), 90), (90, 90, 120),
                  tuple(rng.uniform(65, 115, 3))][i % 4]
        full, q_max = form_from_cell((*abc, *angles)), rng.uniform(0.05, 0.6)
        hkl_c, q_c = refine.reflections_of_form(full, q_max)
        with monkeypatch.context() as m:
            m.setattr(refine, "enumerate_reflections", None)
            hkl_n, q_n = refine.reflections_of_form(full, q_max)
        assert len(q_c) == len(q_n) > 0
        np.testing.assert_allclose(q_c, q_n, rtol=1e-14, atol=0)  # both ascending
        by_c, by_n = (np.lexsort(h.T[::-1]) for h in (hkl_c, hkl_n))
        np.testing.assert_array_equal(hkl_c[by_c], hkl_n[by_n])
        np.testing.assert_allclose(q_c[by_c], q_n[by_n], rtol=1e-14, atol=0)


def test_the_determinant_of_one_form_is_that_of_the_array_functions():
    """``refine._positive_det`` on one form: bit for bit :func:`form_determinant` where
    :func:`positive_forms` (margin 0) holds, else 0 (random forms, many not definite)."""
    from ratagent.indexing.refine import _positive_det
    from ratagent.indexing.trials import form_determinant, positive_forms

    forms = np.random.default_rng(3).normal(0.0, 0.05, (2000, 6))
    forms[:, :3] = np.abs(forms[:, :3]) * np.where(np.arange(2000)[:, None] % 7 == 0, -1, 1)
    ok = positive_forms(forms, margin=0.0)
    assert 100 < ok.sum() < 1900
    got = np.array([_positive_det(*f.tolist()) for f in forms])
    np.testing.assert_array_equal(got[ok], form_determinant(forms[ok]))
    assert np.all(got[~ok] == 0.0)


@pytest.mark.parametrize("shape", [(2000, 4), (300, 6), (50, 2), (1, 3), (0, 3)])
def test_unique_rows_is_numpys_unique_along_rows(shape):
    """The same rows, order and first-occurrence indices as ``np.unique(axis=0)``, with
    repeated rows and both signs of zero."""
    from ratagent.indexing._unique import unique_rows

    a = np.round(np.random.default_rng(5).normal(size=shape), 1)
    a = np.concatenate([a, a[: shape[0] // 3][::-1]])
    if len(a) > 2:
        a[0, 0], a[1, 0] = -0.0, 0.0
    rows, first = unique_rows(a, return_index=True)
    rows_np, first_np = np.unique(a, axis=0, return_index=True)
    np.testing.assert_array_equal(rows, rows_np)
    np.testing.assert_array_equal(first, first_np)
    np.testing.assert_array_equal(unique_rows(a), rows_np)
