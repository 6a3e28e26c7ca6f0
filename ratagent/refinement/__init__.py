"""Pawley refinement of extinction-group candidates and their ranking (docs/design.md, loop step 4).

* :func:`pawley_fit` — one EG against a pattern from an approximate cell: lattice under the
  crystal-system constraints, zero shift, TCH profile, Chebyshev background; intensities
  by non-negative linear least squares inside every iteration (variable projection).
* :func:`rank` — every candidate EG fitted, ranked by an information criterion, with the
  set of EGs these data cannot tell apart and the count time that would.

Importing is cheap: nothing is computed until a function is called.
"""

from ratagent.refinement.pawley import PawleyConfig, PawleyResult, Profile, pawley_fit
from ratagent.refinement.ranking import (
    Evidence,
    RankedCandidate,
    RankResult,
    Separation,
    count_time_of,
    criterion,
    rank,
)

__all__ = [
    "Evidence",
    "PawleyConfig",
    "PawleyResult",
    "Profile",
    "RankResult",
    "RankedCandidate",
    "Separation",
    "count_time_of",
    "criterion",
    "pawley_fit",
    "rank",
]
