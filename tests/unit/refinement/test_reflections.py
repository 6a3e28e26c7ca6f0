"""Allowed reflections against textbook absence rules and gemmi's d-spacings."""

import gemmi
import numpy as np
import pytest

from ratagent.crystallography import monoclinic_unique_axis, sg_to_eg, systematically_absent
from ratagent.crystallography.spacegroups import settings as gemmi_settings
from ratagent.refinement.reflections import (
    LatticeModel,
    allowed_reflections,
    check_cell,
    lattice_model,
    settings_for_cell,
    unique_rows,
)

CELLS = {
    "cubic": (5.43, 5.43, 5.43, 90, 90, 90),
    "tetragonal": (4.2, 4.2, 7.9, 90, 90, 90),
    "hexagonal": (3.1, 3.1, 5.2, 90, 90, 120),
    "orthorhombic": (5.1, 6.3, 7.7, 90, 90, 90),
    "monoclinic": (5.1, 6.3, 7.7, 90, 103.0, 90),
    "triclinic": (5.1, 6.3, 7.7, 81.0, 103.0, 95.0),
}


def _refl(sg_name: str, cell, d_min=1.2):
    sg = gemmi.find_spacegroup_by_name(sg_name)
    eg = sg_to_eg(sg.number)
    return allowed_reflections(lattice_model(eg, sg), sg, np.asarray(cell, float), d_min)


@pytest.mark.parametrize(
    ("sg", "cell", "rule"),
    [
        (
            "P 1 21/c 1",
            CELLS["monoclinic"],
            lambda h, k, l: ~(((h == 0) & (l == 0) & (k % 2 != 0)) | ((k == 0) & (l % 2 != 0))),
        ),
        ("F m -3 m", CELLS["cubic"], lambda h, k, l: (h % 2 == k % 2) & (k % 2 == l % 2)),
        ("I m -3 m", CELLS["cubic"], lambda h, k, l: (h + k + l) % 2 == 0),
        ("P m -3 m", CELLS["cubic"], lambda h, k, l: np.ones_like(h, bool)),
        ("I 4/m m m", CELLS["tetragonal"], lambda h, k, l: (h + k + l) % 2 == 0),
        ("R -3 m:H", CELLS["hexagonal"], lambda h, k, l: (-h + k + l) % 3 == 0),
    ],
)
def test_allowed_members_follow_the_textbook_rule(sg, cell, rule):
    r = _refl(sg, cell)
    h, k, l = r.members.T
    assert rule(h, k, l).all()
    # and nothing the rule allows is missing: every allowed hkl of the box within d_min is listed
    uc = gemmi.UnitCell(*cell)
    box = np.array(
        [
            (a, b, c)
            for a in range(-6, 7)
            for b in range(-6, 7)
            for c in range(-6, 7)
            if (a, b, c) != (0, 0, 0)
        ]
    )
    d = np.array([uc.calculate_d(list(map(int, x))) for x in box])
    want = box[(d >= 1.2) & rule(*box.T)]
    got = {tuple(x) for x in r.members}
    assert all(tuple(x) in got for x in want)


@pytest.mark.parametrize("system", list(CELLS))
def test_families_share_d_and_invariants_give_gemmi_d(system):
    cell = np.asarray(CELLS[system], float)
    axis = "b" if system == "monoclinic" else ""
    lat = LatticeModel(system, axis)
    p1 = gemmi.find_spacegroup_by_name("P 1")
    r = allowed_reflections(lat, p1, cell, 1.3)
    g = lat.metric_params(cell)
    uc = gemmi.UnitCell(*cell)
    d_gemmi = np.array([uc.calculate_d(list(map(int, x))) for x in r.members])
    d_family = 1.0 / np.sqrt(r.inv_d2(g))[r.member_family]
    np.testing.assert_allclose(d_family, d_gemmi, rtol=1e-10)
    np.testing.assert_allclose(lat.cell(g), cell, rtol=1e-10)
    assert r.multiplicity.sum() == len(r.members)


def test_settings_follow_the_cell():
    # EG of P2_1/c: with a unique-axis-b cell only the b settings qualify
    eg = sg_to_eg(14)
    names = {s.hm for s in settings_for_cell(eg, check_cell(CELLS["monoclinic"]))}
    assert names == {"P 1 21/c 1", "P 1 21/n 1", "P 1 21/a 1"}
    assert settings_for_cell(sg_to_eg(225), check_cell(CELLS["monoclinic"])) == ()


@pytest.mark.parametrize("axis", ["a", "b", "c"])
@pytest.mark.parametrize("sg", [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
def test_every_monoclinic_eg_is_fitted_on_any_unique_axis(sg, axis):
    """A cell with unique axis a or c (cells from the literature often have γ ≠ 90°) is
    fitted in a setting of every monoclinic EG, and that setting forbids exactly the
    reflections gemmi's setting of the space group with that unique axis forbids.

    P 1 2 1, P 2 1 1 and P 1 1 2 forbid nothing, so one setting per absence set left EG
    1 (P2, Pm, P2/m) with unique axis b alone, and EG 5 (C2, Cm, C2/m) without A 1 1 2.
    """
    angles = {"a": (104.0, 90.0, 90.0), "b": (90.0, 104.0, 90.0), "c": (90.0, 90.0, 104.0)}[axis]
    cell = check_cell((5.1, 6.3, 7.4, *angles))
    eg = sg_to_eg(sg)
    fitted = settings_for_cell(eg, cell)
    assert fitted, f"SG {sg}: EG {eg} has no setting for unique axis {axis}"
    box = np.array([(h, k, l) for h in range(-4, 5) for k in range(-4, 5) for l in range(-4, 5)])
    gemmi_absent = {systematically_absent(s, box).tobytes() for s in gemmi_settings(sg)
                    if monoclinic_unique_axis(s) == axis}
    assert {systematically_absent(s, box).tobytes() for s in fitted} <= gemmi_absent


@pytest.mark.parametrize(
    ("cell", "word"),
    [
        ((5.0, 5.0, 5.0, 90, 90), "six numbers"),
        ((5.0, -5.0, 5.0, 90, 90, 90), "positive"),
        ((5.0, 5.0, 5.0, 90, 190, 90), "angles"),
        ((5.0, 5.0, float("nan"), 90, 90, 90), "non-finite"),
        ("abc", "six numbers"),
    ],
)
def test_bad_cells_are_named(cell, word):
    with pytest.raises(ValueError, match=word):
        check_cell(cell)


@pytest.mark.parametrize("columns", [1, 2, 4, 6])
def test_unique_rows_equals_numpy_row_wise(columns):
    """Packed rows give numpy's unique rows, inverse and counts, in its lexicographic order;
    ranges too wide to pack take numpy's own path."""
    rng = np.random.default_rng(columns)
    rows = rng.integers(-30, 900, size=(4000, columns))
    rows = np.vstack([rows, rows[::3]])
    keys, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    got = unique_rows(rows)
    for want, have in zip((keys, inverse.reshape(-1), counts), got, strict=True):
        np.testing.assert_array_equal(have, want)
    wide = rows.copy()
    wide[0] = 2**40
    np.testing.assert_array_equal(unique_rows(wide)[0], np.unique(wide, axis=0))
