"""Random structures, orbits and reflection lists against gemmi and textbook rules."""

from __future__ import annotations

import collections

import gemmi
import numpy as np
import pytest

from ratagent.crystallography import crystal_system
from ratagent.simulation import (
    check_absences,
    crystal_from_sites,
    random_crystal,
    random_record,
    reflection_list,
    sample_space_group,
)
from ratagent.simulation.lattice import cell_volume, random_cell, strain_cell
from ratagent.simulation.reflections import structure_factor_squared, unique_reflections
from ratagent.simulation.symmetry import hall_symbol, is_absent


def _same_sets(a: np.ndarray, b: np.ndarray) -> bool:
    """Two sets of fractional positions are equal modulo lattice translations."""
    if len(a) != len(b):
        return False
    diff = a[:, None, :] - b[None, :, :]
    close = np.all(np.abs(diff - np.round(diff)) < 1e-4, axis=2)
    return bool(close.any(1).all() and close.any(0).all())


@pytest.fixture(scope="module")
def one_per_group():
    """One random crystal and its reflection list for every space group 1–230."""
    rng = np.random.default_rng(2024)
    crystals = [random_crystal(sg, rng) for sg in range(1, 231)]
    return crystals, [reflection_list(c, d_min=1.2) for c in crystals]


def test_random_crystals_are_invariant_under_gemmi_ops(one_per_group):
    crystals, _ = one_per_group
    for c in crystals:
        sg = gemmi.find_spacegroup_by_number(c.sg_number)
        assert sg.hall == c.hall
        els = np.array(c.elements)
        for op in sg.operations():
            img = np.array([op.apply_to_xyz(list(x)) for x in c.frac]) % 1.0
            for el in set(c.elements):
                assert _same_sets(img[els == el], c.frac[els == el]), (c.sg_number, op.triplet())


def test_random_crystals_are_plausible(one_per_group):
    from ratagent.simulation.structures import shortest_distance

    crystals, _ = one_per_group
    special = 0
    for c in crystals:
        v = cell_volume(c.cell)
        closest = shortest_distance(c.frac, c.cell)
        assert 9.9 <= v / len(c) <= 22.1 or closest == pytest.approx(1.6)
        assert closest >= 1.6 - 1e-9, (c.sg_number, c.cell, len(c))
        sg = gemmi.find_spacegroup_by_number(c.sg_number)
        special += len(c) % len(sg.operations()) != 0  # some orbit shorter than general
        uc = gemmi.UnitCell(*c.cell)
        assert uc.is_compatible_with_spacegroup(sg)
    assert special > 20  # special positions do occur


def test_no_systematically_absent_reflection_is_stored(one_per_group):
    _, records = one_per_group
    report = check_absences(records)
    assert report.ok, report.absent_stored[:5]
    assert report.n_structures == 230 and report.n_reflections > 1000


def test_absent_reflections_have_zero_structure_factor(one_per_group):
    """The expanded atoms make F vanish where gemmi says absent (orbit expansion is right)."""
    crystals, _ = one_per_group
    box = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    box = box[np.any(box != 0, axis=1)]
    for c in crystals[::7]:
        absent = gemmi.find_spacegroup_by_number(c.sg_number).operations().systematic_absences(box)
        if not absent.any():
            continue
        hkl = box[absent]
        d = gemmi.UnitCell(*c.cell).calculate_d_array(hkl.astype(np.int32))
        f2 = structure_factor_squared(c, hkl, d)
        scale = structure_factor_squared(c, np.zeros((1, 3)), np.array([1e9]))[0]
        assert f2.max() < 1e-12 * scale, c.sg_number


@pytest.mark.parametrize(
    "sg, rule",
    [
        (225, lambda h, k, l: (h % 2 == k % 2) & (k % 2 == l % 2)),  # F: all even or all odd
        (229, lambda h, k, l: (h + k + l) % 2 == 0),  # I: h + k + l = 2n
        (12, lambda h, k, l: (h + k) % 2 == 0),  # C 2/m: h + k = 2n
        # P212121: h00 h = 2n, 0k0 k = 2n, 00l l = 2n (2₁ along each axis)
        (
            19,
            lambda h, k, l: (
                ~(
                    ((k == 0) & (l == 0) & (h % 2 == 1))
                    | ((h == 0) & (l == 0) & (k % 2 == 1))
                    | ((h == 0) & (k == 0) & (l % 2 == 1))
                )
            ),
        ),
        # P2₁/c: h0l l = 2n (c glide), 0k0 k = 2n (2₁ along b)
        (14, lambda h, k, l: ~(((k == 0) & (l % 2 == 1)) | ((h == 0) & (l == 0) & (k % 2 == 1)))),
        # R (obverse, hexagonal axes): −h + k + l = 3n
        (166, lambda h, k, l: (-h + k + l) % 3 == 0),
        # P6₃: 00l l = 2n
        (173, lambda h, k, l: ~((h == 0) & (k == 0) & (l % 2 == 1))),
    ],
)
def test_textbook_reflection_conditions(sg, rule):
    rng = np.random.default_rng(sg)
    rec = random_record(rng, sg_number=sg, d_min=0.8)
    h, k, l = rec.hkl.T
    assert np.all(rule(h, k, l)), rec.hkl[~rule(h, k, l)][:5]
    # and the op rule marks exactly the textbook absences in a box of all hkl
    box = np.stack(np.meshgrid(*[np.arange(-5, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    box = box[np.any(box != 0, axis=1)]
    np.testing.assert_array_equal(is_absent(box, hall_symbol(sg)), ~rule(*box.T))


def test_multiplicities_count_every_reflection():
    """Σ multiplicity = number of lattice points in the sphere 1/d ≤ 1/d_min (P1̄ has no absences)."""
    cell = np.array([5.1, 6.3, 7.7, 81.0, 97.0, 102.0])
    _, mult, d = unique_reflections(hall_symbol(2), cell, 1.1)
    box = np.stack(np.meshgrid(*[np.arange(-12, 13)] * 3, indexing="ij"), -1).reshape(-1, 3)
    q2 = gemmi.UnitCell(*cell).calculate_1_d2_array(box.astype(np.int32))
    assert mult.sum() == np.count_nonzero((q2 > 0) & (q2 <= 1 / 1.1**2))
    assert np.all(mult == 2)  # Friedel pairs only
    assert np.all(np.diff(d) <= 1e-12)


def test_cubic_multiplicities_textbook():
    hkl, mult, _ = unique_reflections(hall_symbol(221), np.array([4.0, 4, 4, 90, 90, 90]), 0.9)
    table = {tuple(sorted(np.abs(h))): m for h, m in zip(hkl, mult, strict=True)}
    assert table[(0, 0, 1)] == 6 and table[(0, 1, 1)] == 12 and table[(1, 1, 1)] == 8
    assert table[(0, 1, 2)] == 24 and table[(1, 2, 3)] == 48


def test_wyckoff_multiplicities(references):
    for ref in references:
        hall = gemmi.find_spacegroup_by_name(ref.hm).hall
        assert len(crystal_from_sites(ref.sg_number, ref.cell, ref.sites, hall=hall)) == ref.n_atoms


def test_rng_reproducibility():
    a = random_record(np.random.default_rng(7))
    b = random_record(np.random.default_rng(7))
    c = random_record(np.random.default_rng(8))
    assert a.sg_number == b.sg_number
    np.testing.assert_array_equal(a.hkl, b.hkl)
    np.testing.assert_array_equal(a.f2, b.f2)
    np.testing.assert_array_equal(a.cell, b.cell)
    assert not (a.sg_number == c.sg_number and np.array_equal(a.cell, c.cell))


def test_extinction_groups_are_balanced():
    from ratagent.crystallography import N_EG, sg_to_eg

    rng = np.random.default_rng(0)
    n = 9900
    counts = collections.Counter(sg_to_eg(sample_space_group(rng)) for _ in range(n))
    assert set(counts) == set(range(1, N_EG + 1))
    expected = n / N_EG
    chi2 = sum((counts[e] - expected) ** 2 / expected for e in range(1, N_EG + 1))
    assert chi2 < 160  # 98 degrees of freedom: p ≈ 1e-4
    sg_counts = collections.Counter(sample_space_group(rng, "sg") for _ in range(2300))
    assert len(sg_counts) > 200


@pytest.mark.parametrize(
    "system", ["cubic", "tetragonal", "hexagonal", "trigonal", "orthorhombic", "monoclinic", "triclinic"]
)
def test_cells_and_strain_keep_the_crystal_system(system):
    rng = np.random.default_rng(1)
    cell = random_cell(system, 300.0, rng)
    assert cell_volume(cell) == pytest.approx(300.0)
    strained = strain_cell(cell, system, 0.01, rng)
    for c in (cell, strained):
        a, b, cc, al, be, ga = c
        if system in ("cubic", "tetragonal", "hexagonal", "trigonal"):
            assert a == pytest.approx(b)
        if system == "cubic":
            assert a == pytest.approx(cc)
        if system in ("hexagonal", "trigonal"):
            assert ga == pytest.approx(120.0)
        if system not in ("triclinic",):
            assert al == pytest.approx(90.0)
        if system not in ("triclinic", "monoclinic"):
            assert be == pytest.approx(90.0)
    assert np.max(np.abs(strained[:3] / cell[:3] - 1)) <= 0.01 + 1e-12
    assert not np.allclose(strained, cell)


def test_crystal_system_from_gemmi():
    assert [crystal_system(n) for n in (1, 14, 62, 136, 167, 186, 227)] == [
        "triclinic",
        "monoclinic",
        "orthorhombic",
        "tetragonal",
        "trigonal",
        "hexagonal",
        "cubic",
    ]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: random_crystal(231, np.random.default_rng(0)), "231"),
        (lambda: random_crystal(0, np.random.default_rng(0)), "0"),
        (lambda: random_cell("cubix", 100.0, np.random.default_rng(0)), "cubix"),
        (lambda: random_cell("cubic", -5.0, np.random.default_rng(0)), "-5.0"),
        (lambda: unique_reflections(hall_symbol(1), np.array([5.0, 5, 5, 90, 90, 90]), 0.0), "d_min"),
        (lambda: unique_reflections(hall_symbol(1), np.array([5.0, -5, 5, 90, 90, 90]), 1.0), "-5.0"),
        (lambda: strain_cell([5.0, 5, 5, 90, 90, 90], "cubic", 0.5, np.random.default_rng(0)), "0.5"),
        (lambda: sample_space_group(np.random.default_rng(0), "pg"), "pg"),
        (
            lambda: (
                crystal_from_sites(1, [5, 5, 5, 90, 90, 90], [("Xx", (0, 0, 0))]).elements
                and reflection_list(crystal_from_sites(1, [5, 5, 5, 90, 90, 90], [("Xx", (0, 0, 0))]))
            ),
            "Xx",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_no_random_crystal_has_atoms_closer_than_min_distance_images_included():
    """One atom at the inversion centre (0, 0, 0) of P 1 21/m 1 repeats at (0, ½, 0)
    through the 2₁ screw: its orbit alone lies on a lattice twice as fine along b. Before
    the final check, such a cell with b = 2.34 Å (so C–C = 1.17 Å) passed, because only
    the cell edges were checked."""
    from ratagent.simulation.structures import shortest_distance

    frac = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    cell = np.array([5.065, 2.343, 3.704, 90.0, 95.9, 90.0])
    assert shortest_distance(frac, cell) == pytest.approx(2.343 / 2)
    # against the brute-force distance over a 5 × 5 × 5 block of images
    rng = np.random.default_rng(4)
    for _ in range(20):
        c = np.array([*rng.uniform(2, 6, 3), 90.0, rng.uniform(90, 115), 90.0])
        f = rng.random((3, 3))
        m = gemmi.UnitCell(*c)
        shifts = [np.array(t) - 2 for t in np.ndindex(5, 5, 5)]
        brute = min(
            m.orthogonalize(gemmi.Fractional(*(f[i] - f[j] + t))).length()
            for i in range(3)
            for j in range(3)
            for t in shifts
            if i != j or t.any()
        )
        assert shortest_distance(f, c) == pytest.approx(brute, rel=1e-9)
    for sg in (11, 131, 25, 221):
        for seed in range(30):
            cr = random_crystal(sg, np.random.default_rng(seed))
            assert shortest_distance(cr.frac, cr.cell) >= 1.6 - 1e-9, (sg, seed)


def test_min_distance_in_a_hexagonal_cell_matches_cartesian_geometry():
    """Graphite-like layer: C at (1/3, 2/3, 0) and (2/3, 1/3, 0), a = 2.46 Å → C–C = a/√3 = 1.420 Å."""
    from ratagent.simulation.structures import _min_distance

    cell = np.array([2.46, 2.46, 6.7, 90.0, 90.0, 120.0])
    frac = np.array([[1 / 3, 2 / 3, 0.0]])
    new = np.array([[2 / 3, 1 / 3, 0.0]])
    uc = gemmi.UnitCell(*cell)
    expected = uc.orthogonalize(gemmi.Fractional(*frac[0])).dist(uc.orthogonalize(gemmi.Fractional(*new[0])))
    assert expected == pytest.approx(2.46 / np.sqrt(3), abs=1e-3)
    assert _min_distance(frac, new, cell) == pytest.approx(expected, abs=1e-6)
