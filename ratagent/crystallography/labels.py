"""The talk's 37-bit split label of an extinction group, and its decoding.

Bit layout (see the talk, "Split Head: 37-bit structured target")::

    bits  0– 6  crystal system, one-hot, in CRYSTAL_SYSTEMS order             (7)
    bits  7–11  lattice centring, one-hot P, C, I, F, R (A/B folded into C)     (5)
    bits 12–23  symbol position 1: 21 31 41 42 61 62 63 a b c d n, multi-hot   (12)
    bits 24–29  symbol position 2: 21 a b c d n                                 (6)
    bits 30–36  symbol position 3: 21 a b c d n (ab)                            (7)

A composite entry such as ``21/b`` or ``42/n`` in position 1 sets both of its bits;
``-`` and ``1`` (no condition) set none. The vocabularies are exactly the entries that
occur in the paper's canonical symbols, so 12 + 6 + 7 = 25 operator bits.

The code is injective over the 99 EGs (tested). Two pairs of EGs have identical
absences — 72/78 (P31 vs P62: 000l, l = 3n) and 82/83 (P2₁3 vs P4₂32) — and the label
still separates them, through the crystal-system bits (72/78) and the operator bits
(2₁ vs 4₂ in position 1, 82/83): a distinction the data can only support through
intensities and metric, which the auxiliary head learns jointly.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ratagent.crystallography.extinction import CENTRINGS, N_EG, extinction_group
from ratagent.crystallography.spacegroups import CRYSTAL_SYSTEMS

__all__ = ["BIT_NAMES", "N_BITS", "POSITION_VOCAB", "code_matrix", "decode", "encode", "rank"]

#: Operator vocabulary of each symbol position.
POSITION_VOCAB: tuple[tuple[str, ...], ...] = (
    ("21", "31", "41", "42", "61", "62", "63", "a", "b", "c", "d", "n"),
    ("21", "a", "b", "c", "d", "n"),
    ("21", "a", "b", "c", "d", "n", "(ab)"),
)

#: Human-readable name of each bit.
BIT_NAMES: tuple[str, ...] = (
    *CRYSTAL_SYSTEMS,
    *(f"centring {c}" for c in CENTRINGS),
    *(f"pos{i + 1} {op}" for i, vocab in enumerate(POSITION_VOCAB) for op in vocab),
)

#: Length of the label.
N_BITS = len(BIT_NAMES)
assert N_BITS == 37

_NO_CONDITION = {"-", "1"}


def encode(eg: int) -> np.ndarray:
    """The 37-bit label of an EG (1–99) as a uint8 array of 0/1, shape (37,)."""
    group = extinction_group(eg)
    bits = np.zeros(N_BITS, np.uint8)
    bits[CRYSTAL_SYSTEMS.index(group.crystal_system)] = 1
    bits[len(CRYSTAL_SYSTEMS) + CENTRINGS.index(group.centring)] = 1
    offset = len(CRYSTAL_SYSTEMS) + len(CENTRINGS)
    for vocab, entry in zip(POSITION_VOCAB, group.positions, strict=True):
        for op in entry.split("/"):
            if op in _NO_CONDITION:
                continue
            if op not in vocab:
                raise ValueError(f"EG {eg}: operator {op!r} of {group.symbol!r} not in {vocab}")
            bits[offset + vocab.index(op)] = 1
        offset += len(vocab)
    return bits


@cache
def code_matrix() -> np.ndarray:
    """All 99 codes, shape (99, 37), row i = ``encode(i + 1)`` (read-only)."""
    m = np.stack([encode(eg) for eg in range(1, N_EG + 1)])
    m.setflags(write=False)
    return m


def decode(bit_probs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """EG log-likelihoods from independent bit probabilities.

    log L(EG) = Σ_b [c_b log p_b + (1 − c_b) log(1 − p_b)], with c the EG's code. Exact
    0/1 input gives 0 for the matching EG and a large negative value for the others.

    Parameters
    ----------
    bit_probs : array, shape (..., 37), values in [0, 1]
    eps : float
        Probabilities are clipped to [eps, 1 − eps].

    Returns
    -------
    ndarray, shape (..., 99): log-likelihood of each EG (index i ↔ EG i + 1).
    """
    p = np.asarray(bit_probs, float)
    if p.shape[-1:] != (N_BITS,):
        raise ValueError(f"bit_probs must have last dimension {N_BITS}, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("bit_probs must be probabilities in [0, 1] (got NaN or out of range)")
    p = np.clip(p, eps, 1 - eps)
    c = code_matrix().astype(float)
    return np.log(p) @ c.T + np.log1p(-p) @ (1 - c).T


def rank(bit_probs: np.ndarray) -> list[tuple[int, float]]:
    """EGs ranked by the distribution that one set of bit probabilities induces.

    Returns ``[(eg, probability), ...]`` best first, probabilities from the softmax of
    :func:`decode` over the 99 EGs.
    """
    ll = decode(bit_probs)
    if ll.ndim != 1:
        raise ValueError(f"rank takes one label of shape (37,), got {np.shape(bit_probs)}")
    p = np.exp(ll - ll.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    return [(int(i) + 1, float(p[i])) for i in order]
