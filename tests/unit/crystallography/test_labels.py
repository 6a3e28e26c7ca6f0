"""The 37-bit split label: layout, injectivity, and decoding."""

import numpy as np
import pytest

from ratagent.crystallography import CRYSTAL_SYSTEMS, N_BITS, code_matrix, decode, encode, extinction_group
from ratagent.crystallography.labels import BIT_NAMES, rank


def test_layout():
    assert N_BITS == 37 == len(BIT_NAMES)
    m = code_matrix()
    assert m.shape == (99, 37)
    assert (m[:, :7].sum(1) == 1).all(), "one crystal-system bit per EG"
    assert (m[:, 7:12].sum(1) == 1).all(), "one centring bit per EG"


def test_injective_over_99_egs():
    codes = {encode(eg).tobytes(): eg for eg in range(1, 100)}
    assert len(codes) == 99


@pytest.mark.parametrize(
    ("eg", "names"),
    [
        (4, {"monoclinic", "centring P", "pos1 21", "pos1 b"}),  # P 21/b 1 1
        (10, {"orthorhombic", "centring P", "pos1 21", "pos2 21", "pos3 21"}),  # P 21 21 21
        (26, {"orthorhombic", "centring C"}),  # C - - - (A, B folded into C)
        (32, {"orthorhombic", "centring C", "pos1 c", "pos2 c", "pos3 (ab)"}),  # C c c (ab)
        (76, {"trigonal", "centring R", "pos3 c"}),  # R - - c
        (98, {"cubic", "centring F", "pos1 d", "pos3 c"}),  # F d - c
        (99, {"triclinic", "centring P"}),  # P -
    ],
)
def test_known_codes(eg, names):
    bits = encode(eg)
    assert {BIT_NAMES[i] for i in np.flatnonzero(bits)} == names, extinction_group(eg).symbol


def test_identical_absence_pairs_are_separated():
    # 82 (P 21 3) and 83 (P 42 3 2) forbid the same reflections; the label separates them
    assert not np.array_equal(encode(82), encode(83))
    # 72 (P31, trigonal) and 78 (P62, hexagonal): separated by the crystal-system bits
    diff = {BIT_NAMES[i] for i in np.flatnonzero(encode(72) != encode(78))}
    assert {"trigonal", "hexagonal"} <= diff


def test_decode_of_encode_is_identity():
    m = code_matrix().astype(float)
    ll = decode(m)
    assert ll.shape == (99, 99)
    assert (np.argmax(ll, axis=1) == np.arange(99)).all()
    assert rank(m[3])[0][0] == 4
    assert sum(p for _, p in rank(m[3])) == pytest.approx(1.0)


def test_decode_soft_probabilities_ranks_nearest_code_first():
    p = np.where(encode(4) == 1, 0.8, 0.2)
    assert rank(p)[0][0] == 4


@pytest.mark.parametrize("bad", [np.zeros(36), np.full(37, np.nan), np.full(37, 1.5)])
def test_decode_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        decode(bad)


def test_systems_in_bit_order():
    assert BIT_NAMES[:7] == CRYSTAL_SYSTEMS
