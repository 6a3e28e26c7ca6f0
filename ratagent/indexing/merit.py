"""Figures of merit of an indexing and the lattice-centring tests that sharpen them.

* de Wolff (J. Appl. Cryst. 1, 108 (1968)):

  .. math:: M_{20} = \\frac{Q_{20}}{2\\,\\bar\\varepsilon\\,N_{20}}

  with :math:`Q_{20}` the q = 1/d² of the 20th observed line, :math:`\\bar\\varepsilon`
  the mean |q_obs − q_calc| of the indexed lines among the first 20, and :math:`N_{20}`
  the number of distinct calculated q up to :math:`Q_{20}`. A cell with M20 > 10 and
  at most two unindexed lines is, in de Wolff's experience, usually right.
* Smith & Snyder (J. Appl. Cryst. 12, 60 (1979)):

  .. math:: F_N = \\frac{1}{\\overline{|\\Delta 2\\theta|}} \\frac{N}{N_{poss}}

  over the first N lines, with :math:`N_{poss}` the number of distinct calculated lines
  up to the N-th observed one (degrees of 2θ).

Calculated lines respect the lattice centring found by :func:`centring_mask` (the
reflection conditions of International Tables A, table 2.2.13.1); other systematic
absences are not assumed.
"""

from __future__ import annotations

import numpy as np
from scipy.special import bdtrc

__all__ = [
    "CENTRING_CONDITIONS",
    "centring_mask",
    "coincidence_chance",
    "count_distinct",
    "de_wolff_m",
    "smith_snyder_f",
]

#: Integral reflection conditions of the lattice centrings (IT A, table 2.2.13.1);
#: ``R``: obverse rhombohedral on hexagonal axes.
CENTRING_CONDITIONS = {
    "P": "none",
    "A": "k + l = 2n",
    "B": "h + l = 2n",
    "C": "h + k = 2n",
    "I": "h + k + l = 2n",
    "F": "h, k, l all odd or all even",
    "R": "-h + k + l = 3n",
}


def centring_mask(hkl: np.ndarray, centring: str) -> np.ndarray:
    """Whether each reflection of ``hkl`` (n, 3) is allowed by a lattice centring."""
    h, k, l = (np.asarray(hkl)[:, i] for i in range(3))
    if centring == "P":
        return np.ones(len(h), dtype=bool)
    if centring == "A":
        return (k + l) % 2 == 0
    if centring == "B":
        return (h + l) % 2 == 0
    if centring == "C":
        return (h + k) % 2 == 0
    if centring == "I":
        return (h + k + l) % 2 == 0
    if centring == "F":
        return ((h + k) % 2 == 0) & ((h + l) % 2 == 0)
    if centring == "R":
        return (-h + k + l) % 3 == 0
    raise ValueError(f"unknown centring {centring!r}; expected one of {sorted(CENTRING_CONDITIONS)}")


def count_distinct(values: np.ndarray, upto: float, rtol: float = 1e-6) -> int:
    """Number of distinct values ≤ ``upto`` (values within ``rtol`` count once)."""
    v = np.sort(np.asarray(values)[np.asarray(values) <= upto])
    if v.size == 0:
        return 0
    return int(1 + np.count_nonzero(np.diff(v) > rtol * v[1:]))


def de_wolff_m(q_n: float, abs_dq: np.ndarray, n_calc: int) -> float:
    """de Wolff's M_N = Q_N / (2 ε̄ N_calc) (see the module docstring).

    Parameters
    ----------
    q_n : q of the N-th observed line, Å⁻²
    abs_dq : |q_obs − q_calc| of the indexed lines among the first N, Å⁻²
    n_calc : distinct calculated lines up to ``q_n``
    """
    if len(abs_dq) == 0 or n_calc <= 0:
        return 0.0
    eps = max(float(np.mean(abs_dq)), 1e-12 * q_n)
    return float(q_n / (2.0 * eps * n_calc))


def smith_snyder_f(abs_d2theta_deg: np.ndarray, n_lines: int, n_possible: int) -> float:
    """Smith–Snyder F_N = N / (mean |Δ2θ| · N_poss) (see the module docstring)."""
    if len(abs_d2theta_deg) == 0 or n_possible <= 0:
        return 0.0
    mean = max(float(np.mean(abs_d2theta_deg)), 1e-6)
    return float(n_lines / (mean * n_possible))


def coincidence_chance(n_lines: int, n_hit: int, n_calc: int, span_deg: float, tol_deg: float) -> float:
    """P(X ≥ ``n_hit``) that of ``n_lines`` lines at random 2θ, so many fall within
    ``tol_deg`` of one of ``n_calc`` calculated lines spread over ``span_deg``.

    Each random line is hit with probability p = 2 · tol · n_calc / span (capped at 1):
    the binomial tail P(X ≥ k | n, p). 1 when ``n_hit`` ≤ 0.
    """
    if n_hit <= 0:
        return 1.0
    if n_hit > n_lines:
        return 0.0
    p = min(1.0, 2.0 * tol_deg * max(n_calc, 0) / max(span_deg, tol_deg))
    return float(bdtrc(n_hit - 1, n_lines, p))  # scipy.stats.binom.sf's value, without its overhead
