"""Systematic absences from gemmi against textbook reflection conditions (ITA vol. A)."""

import numpy as np
import pytest

from ratagent.crystallography import crystal_system, space_group, systematically_absent
from ratagent.crystallography.extinction import _sg_table
from ratagent.crystallography.spacegroups import hkl_box


def _zero_pair_rule(h, k, l, period):
    """Cubic d-glide: in each zone with one index zero, the other two sum to 0 mod ``period``."""
    bad = np.zeros(h.shape, bool)
    for zero, a, b in ((h, k, l), (k, h, l), (l, h, k)):
        bad |= (zero == 0) & ((a + b) % period != 0)
    return bad


def _all_same_parity(h, k, l):
    return (h % 2 == k % 2) & (k % 2 == l % 2)


# symbol -> absent(h, k, l) from the textbook conditions (International Tables A, ch. 2 and 7)
TEXTBOOK = {
    # F centring: h, k, l all even or all odd
    "F m -3 m": lambda h, k, l: ~_all_same_parity(h, k, l),
    # I centring: h + k + l = 2n
    "I m -3 m": lambda h, k, l: (h + k + l) % 2 != 0,
    # C centring: h + k = 2n
    "C 1 2/m 1": lambda h, k, l: (h + k) % 2 != 0,
    # R obverse, hexagonal axes: -h + k + l = 3n
    "R -3 m:H": lambda h, k, l: (-h + k + l) % 3 != 0,
    # P 21/c (b unique): h0l: l = 2n; 0k0: k = 2n
    "P 1 21/c 1": lambda h, k, l: ((k == 0) & (l % 2 != 0)) | ((h == 0) & (l == 0) & (k % 2 != 0)),
    # P 21 21 21: h00: h = 2n, 0k0: k = 2n, 00l: l = 2n (21 along c -> 00l: l = 2n)
    "P 21 21 21": lambda h, k, l: (
        ((k == 0) & (l == 0) & (h % 2 != 0))
        | ((h == 0) & (l == 0) & (k % 2 != 0))
        | ((h == 0) & (k == 0) & (l % 2 != 0))
    ),
    # P 41 (tetragonal): 00l: l = 4n
    "P 41": lambda h, k, l: (h == 0) & (k == 0) & (l % 4 != 0),
    # P 63: 000l: l = 2n
    "P 63": lambda h, k, l: (h == 0) & (k == 0) & (l % 2 != 0),
    # F d -3 m: F centring and 0kl: k + l = 4n (cyclically)
    "F d -3 m:1": lambda h, k, l: ~_all_same_parity(h, k, l) | _zero_pair_rule(h, k, l, 4),
    # P m -3 m: no conditions
    "P m -3 m": lambda h, k, l: np.zeros(h.shape, bool),
}


@pytest.mark.parametrize("symbol", sorted(TEXTBOOK))
def test_absences_match_textbook_rules(symbol):
    hkl = hkl_box(8)
    expected = TEXTBOOK[symbol](*hkl.T.astype(np.int64))
    got = systematically_absent(symbol, hkl)
    assert got.shape == (len(hkl),)
    mismatched = hkl[got != expected]
    assert mismatched.size == 0, f"{symbol}: disagreement at {mismatched[:5].tolist()}"


def test_ia3d_general_and_special_conditions():
    # Ia-3d (230): hkl: h+k+l = 2n; 0kl: k, l = 2n; hhl: 2h + l = 4n; h00: h = 4n
    absent = lambda hkl: bool(systematically_absent(230, np.array([hkl]))[0])  # noqa: E731
    assert absent((1, 1, 1)) and not absent((2, 1, 1))
    assert absent((0, 1, 1)) and not absent((0, 2, 2))
    assert absent((2, 2, 2)) and not absent((2, 2, 4))
    assert absent((1, 1, 4)) and not absent((1, 1, 2))
    assert absent((2, 0, 0)) and not absent((4, 0, 0))


def test_single_hkl_and_vectorised_agree():
    hkl = hkl_box(3)
    many = systematically_absent(14, hkl)
    one_by_one = [bool(systematically_absent(14, h)[0]) for h in hkl]
    assert many.tolist() == one_by_one


def test_crystal_systems_agree_with_paper_table():
    _, paper = _sg_table()
    disagreements = {sg: (s, crystal_system(sg)) for sg, s in paper.items() if crystal_system(sg) != s}
    assert disagreements == {}


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        (0, ValueError, "0"),
        (231, ValueError, "231"),
        ("P 99 x", ValueError, "P 99 x"),
        (2.5, TypeError, "2.5"),
    ],
)
def test_bad_space_group(bad, error, text):
    with pytest.raises(error, match=text):
        space_group(bad)


def test_bad_hkl():
    with pytest.raises(ValueError, match="shape"):
        systematically_absent(1, np.zeros((4, 2), int))
    with pytest.raises(ValueError, match="integers"):
        systematically_absent(1, np.array([[0.5, 0, 1]]))
