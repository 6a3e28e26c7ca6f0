"""Whether an indexed cell and the ranking refined in it can be trusted enough to accept.

Without a given cell, the agent's EG ranking is only as good as the indexed cell it was
refined in, and a Pawley fit in a wrong cell still picks a "best" EG: the lower
symmetry wins for its extra free intensities. Before an ``accept`` on an indexed cell,
the evidence for the cell itself is weighed (:func:`cell_evidence`), each item against a
threshold of :class:`~ratagent.agent.AgentConfig` (:func:`doubts`):

1. **Indexing merit.** de Wolff's M20 of the cell (J. Appl. Cryst. 1, 108 (1968)):
   the mean line-position discrepancy against the density of calculated lines. An
   accept needs ``min_accept_m20``; the indexing's own "convincing" threshold is lower,
   because it only decides whether to refine. And the lines the cell indexes must be at
   least ``min_lines_per_parameter`` × (cell parameters + 1 for the zero shift), at
   most 20: a handful of lines is indexed by a high-symmetry cell of a low-symmetry
   mineral with a fine M_N (measured patterns of monoclinic minerals with 5–9 lines
   found were indexed as hexagonal or cubic), while 9 lines fix a cubic cell. Only
   indexed lines count: a line the cell leaves out (noise, an impurity) fixes nothing
   (simulated rock salt at 1 s, 7 lines indexed and one noise line beside them, passed
   a need of 8 on the noise line).
2. **Metric symmetry.** The lattice symmetry of the cell's metric (gemmi's
   ``find_lattice_symmetry``: the twofold axes of the lattice within an obliquity of
   ``metric_tolerance_deg``, as in Le Page, J. Appl. Cryst. 15, 255 (1982)). A cell whose
   metric has a higher lattice system than the cell is described in is not in its
   conventional setting: its higher-symmetry description indexes the same lines and was
   not the one refined.
3. **The network's crystal system.** The posterior mass the classifier puts on the
   lattice family of the cell, at least ``min_family_probability``. The network sees the
   whole profile; a cell of a family it finds implausible has most often been a wrong
   cell on measured patterns.
4. **Competing cells.** When another indexed cell, of another lattice family, fits within
   ``min_cell_delta_bic`` of the winner, the data do not decide between the cells.
5. **Fit quality.** The best fit's χ²_ν at most ``max_accept_chi2_reduced``: a cell that
   leaves systematic misfit behind may be a sub- or supercell of the truth.
6. **Rival indexings.** Among the indexing's five best cells, another lattice of lower
   symmetry (not a lower description of this one: its metric says so) that passes the
   indexing's convincing test and indexes at least as many lines with an M20 of at least
   ``rival_m20_fraction`` × this cell's: the lines do not decide the lattice (a
   pseudo-cubic tetragonal mineral and its cubic look-alike index the same 17 lines), and
   the indexing's preference for symmetry is all that chose. Such a cell is often not
   refined at all; when it is, check 4 weighs its fit.
7. **The network's EG.** The rank of the leading EG in the network's posterior, at most
   ``max_network_rank``. Where the cell is right and the leading EG is wrong, it is
   most often one the network finds implausible (a pseudo-cubic tetragonal mineral
   fitted as cubic ranks 71st of 99), while right accepts rank within the first few
   tens: the network's top EG is often wrong, its bottom half rarely right.
8. **Lines left out.** At most ``max_accept_unindexed_strong`` strong lines of the first
   20 unindexed, and at least ``min_indexed_fraction`` of them indexed: a line no cell
   reflection explains is evidence against the cell, or for a second phase whose lines
   the Pawley fit of one phase cannot account for either.

9. **The leading EG's lattice.** The lattice family of the EG the fit prefers is the
   family of the indexed lattice (``require_leader_in_cell_family``). Cell axes can admit
   a family the lattice does not have (an orthorhombic B cell with a ≈ b has tetragonal
   axes): an EG of that family, fitted on those axes, has reflections the lattice has
   not, and its extra freedom, not the data, made it lead.

An accepted EG is reported with every candidate fitted in the same cell within
``accept_set_delta_bic`` of it (:func:`accepted_set`).

Every function is pure over plain values (the ``meta`` that
:class:`~ratagent.agent.Assessment` carries), so that ``python -m training evaluate
--pipeline`` can choose the thresholds on one half of the measured dev set and report
them on the other from stored assessments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ratagent.crystallography import N_EG, extinction_group
from ratagent.crystallography.spacegroups import lattice_family as family_of  # trigonal → hexagonal
from ratagent.indexing.reduction import metric_family
from ratagent.refinement.ranking import criterion

__all__ = ["CHECKS", "accepted_set", "cell_evidence", "doubts", "family_of", "gate", "metric_family",
           "undecided_order"]

#: Free cell parameters of each lattice family.
_CELL_PARAMETERS = {"triclinic": 6, "monoclinic": 4, "orthorhombic": 3, "tetragonal": 2, "hexagonal": 2,
                    "cubic": 1}
_FAMILY_RANK = {"triclinic": 0, "monoclinic": 1, "orthorhombic": 2, "tetragonal": 3, "hexagonal": 3,
                "cubic": 4}


def _family_probability(nn_probs: Sequence[float], family: str) -> float:
    p = np.asarray(nn_probs, float)
    return float(sum(p[eg - 1] for eg in range(1, p.size + 1)
                     if extinction_group(eg).lattice_family == family))


def _criterion(fit: dict[str, Any], c_hat: float) -> float:
    """B of a cell's best fit (``meta["cell_fits"]``) as the ranking scored it: its
    ``penalty`` and ``log_prior`` (absent in older records: the BIC)."""
    return criterion(fit["chi2"], fit["n_params"], fit["n_obs"], c_hat, fit.get("penalty"),
                     fit.get("log_prior", 0.0))


def _rival_lattice(other: dict[str, Any], n_indexed: int, family: str, tolerance_deg: float) -> bool:
    """Whether indexed cell ``other`` is another lattice of lower symmetry than a cell of
    ``family`` indexing ``n_indexed`` lines that convinces the indexing (``passes``) and
    indexes as many: not a lower-symmetry description of the same lattice (an
    orthohexagonal C cell of a hexagonal one), whose metric shows it."""
    own = family_of(other["crystal_system"])
    return (_FAMILY_RANK[own] < _FAMILY_RANK[family] and other.get("passes", True)
            and other.get("n_indexed", 0) >= n_indexed
            and _FAMILY_RANK[metric_family(other["cell"], other["centring"], tolerance_deg)]
            < _FAMILY_RANK[family])


def cell_evidence(
    meta: dict[str, Any], nn_probs: Sequence[float], tolerance_deg: float
) -> dict[str, Any] | None:
    """What speaks for the indexed cell an assessment was refined in (module docstring).

    ``meta`` is :attr:`Assessment.meta` of an assessment refined in indexed cells
    (``cells_indexed``, ``cell_fits``, ``cell``); None when it holds no indexed cell.
    Returns ``m20``, ``n_lines`` (in the merit), ``n_indexed``, ``n_unindexed_strong``,
    ``family`` (of the cell as indexed), ``metric_family``, ``rival_m20_ratio`` and
    ``rival_family`` (the best rival indexing of another family, check 6; 0 and None when
    there is none), ``leader`` and ``network_rank`` (the leading EG in the cell and its
    rank in ``nn_probs``, 1 = the network's top),
    ``family_probability``, ``chi2_reduced`` (the best fit in it) and ``cell_delta_bic``
    (how much worse the best fit in the best other cell of another lattice family is;
    ∞ when there is none).
    """
    used = meta.get("cell")
    indexed = meta.get("cells_indexed") or []
    fits = meta.get("cell_fits") or []
    if used is None or not indexed or not fits:
        return None
    # the agent writes the same floats into all three: cells match exactly
    cell = next((c for c in indexed if list(c["cell"]) == list(used)), None)
    fit_of = {tuple(f["cell"]): f for f in fits}
    win = fit_of.get(tuple(used))
    if cell is None or win is None:
        return None
    family = family_of(cell["crystal_system"])
    # ĉ as the agent scored the cells: the smallest χ²_ν of any fit in any of them
    c_hat = max(1.0, min(f.get("min_chi2_reduced", f["chi2_reduced"]) for f in fits))
    others = [_criterion(fit_of[tuple(c["cell"])], c_hat) for c in indexed
              if tuple(c["cell"]) in fit_of and tuple(c["cell"]) != tuple(used)
              and family_of(c["crystal_system"]) != family]
    n_lines = int(cell.get("n_lines", 20))
    n_indexed = int(cell.get("n_indexed", n_lines))
    rival = max(((r["m20"] / max(cell["m20"], 1e-9), family_of(r["crystal_system"]))
                 for r in meta.get("indexing") or [] if _rival_lattice(r, n_indexed, family, tolerance_deg)),
                default=(0.0, None))
    p = np.asarray(nn_probs, float)
    leader = int(win.get("eg", 0))
    network_rank = int((p > p[leader - 1]).sum()) + 1 if 1 <= leader <= p.size else p.size
    return {
        "leader": leader,
        "leader_family": extinction_group(leader).lattice_family if 1 <= leader <= N_EG else None,
        "network_rank": network_rank,
        "rival_m20_ratio": float(rival[0]),
        "rival_family": rival[1],
        "m20": float(cell["m20"]),
        "n_lines": n_lines,
        "n_indexed": n_indexed,
        "n_unindexed_strong": int(cell.get("n_unindexed_strong", 0)),
        "family": family,
        "metric_family": metric_family(cell["cell"], cell["centring"], tolerance_deg),
        "family_probability": _family_probability(nn_probs, family),
        "chi2_reduced": float(win["chi2_reduced"]),
        "cell_delta_bic": (min(others) - _criterion(win, c_hat)) if others else math.inf,
    }


def _m20(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["m20"] >= cfg.min_accept_m20:
        return None
    return f"the indexed cell's M20 = {ev['m20']:.0f} is below the {cfg.min_accept_m20:g} an accept needs"


def _lines(ev: dict[str, Any], cfg: Any) -> str | None:
    need = min(20, math.ceil(cfg.min_lines_per_parameter * (_CELL_PARAMETERS[ev["family"]] + 1)))
    if ev["n_indexed"] >= need:
        return None
    return (f"the {ev['family']} cell rests on {ev['n_indexed']} indexed lines, fewer than the {need} an "
            "accept needs")


def _metric(ev: dict[str, Any], cfg: Any) -> str | None:
    if _FAMILY_RANK[ev["metric_family"]] <= _FAMILY_RANK[ev["family"]]:
        return None
    return (f"the {ev['family']} cell has a {ev['metric_family']} metric (within "
            f"{cfg.metric_tolerance_deg:g}°): it is not the conventional cell of its lattice")


def _network(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["family_probability"] >= cfg.min_family_probability:
        return None
    return (f"the network gives the {ev['family']} family p = {ev['family_probability']:.2f} < "
            f"{cfg.min_family_probability:g}")


def _rival(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["cell_delta_bic"] >= cfg.min_cell_delta_bic:
        return None
    return (f"a cell of another lattice family fits within ΔB = {ev['cell_delta_bic']:.1f} < "
            f"{cfg.min_cell_delta_bic:g}: the data do not decide the cell")


def _rival_indexing(ev: dict[str, Any], cfg: Any) -> str | None:
    if cfg.rival_m20_fraction is None or ev.get("rival_m20_ratio", 0.0) < cfg.rival_m20_fraction:
        return None
    return (f"a {ev['rival_family']} cell indexes as many lines with {ev['rival_m20_ratio']:.0%} of this "
            f"cell's M20 (at least {cfg.rival_m20_fraction:.0%} counts): the lines do not decide the lattice")


def _network_rank(ev: dict[str, Any], cfg: Any) -> str | None:
    if cfg.max_network_rank is None or ev.get("network_rank", 1) <= cfg.max_network_rank:
        return None
    return (f"the network puts EG {ev['leader']} at rank {ev['network_rank']} of 99 (at most "
            f"{cfg.max_network_rank} for an accept): it finds the EG the fit prefers implausible")


def _leader_lattice(ev: dict[str, Any], cfg: Any) -> str | None:
    if not cfg.require_leader_in_cell_family or ev.get("leader_family") in (None, ev["family"]):
        return None
    return (f"the leading EG {ev['leader']} is {ev['leader_family']}, the indexed lattice "
            f"{ev['family']}: the fit tested a lattice the indexing did not find")


def _fit(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["chi2_reduced"] <= cfg.max_accept_chi2_reduced:
        return None
    return f"the best fit leaves misfit: χ²_ν = {ev['chi2_reduced']:.2f} > {cfg.max_accept_chi2_reduced:g}"


def _unindexed(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["n_unindexed_strong"] <= cfg.max_accept_unindexed_strong:
        return None
    return (f"the cell leaves {ev['n_unindexed_strong']} strong lines unindexed, more than the "
            f"{cfg.max_accept_unindexed_strong} an accept allows (a wrong cell, or a second phase)")


def _indexed(ev: dict[str, Any], cfg: Any) -> str | None:
    if ev["n_indexed"] >= cfg.min_indexed_fraction * ev["n_lines"]:
        return None
    return (f"the cell indexes {ev['n_indexed']} of the first {ev['n_lines']} lines, fewer than the "
            f"{cfg.min_indexed_fraction:.0%} an accept needs")


#: Each check of the evidence (module docstring), by the threshold of
#: :class:`~ratagent.agent.AgentConfig` it reads: the doubt it raises, or None.
CHECKS: dict[str, Callable[[dict[str, Any], Any], str | None]] = {
    "min_accept_m20": _m20,
    "min_lines_per_parameter": _lines,
    "metric_tolerance_deg": _metric,
    "min_family_probability": _network,
    "min_cell_delta_bic": _rival,
    "rival_m20_fraction": _rival_indexing,
    "max_network_rank": _network_rank,
    "max_accept_unindexed_strong": _unindexed,
    "min_indexed_fraction": _indexed,
    "max_accept_chi2_reduced": _fit,
    "require_leader_in_cell_family": _leader_lattice,
}


def doubts(evidence: dict[str, Any], config: Any) -> list[str]:
    """The reasons, one sentence each, not to accept a ranking in this cell (empty: no doubt).

    ``config`` holds the thresholds (:class:`~ratagent.agent.AgentConfig`); one sentence
    per failed check of :data:`CHECKS`.
    """
    return [why for check in CHECKS.values() if (why := check(evidence, config)) is not None]


def gate(
    meta: dict[str, Any], nn_probs: Sequence[float], config: Any
) -> tuple[dict[str, Any] | None, list[str]]:
    """The evidence for the indexed cell in ``meta`` and the doubts it leaves (empty: accept)."""
    evidence = cell_evidence(meta, nn_probs, config.metric_tolerance_deg)
    if evidence is None:
        return None, ["the indexed cell the ranking was refined in cannot be traced"]
    return evidence, doubts(evidence, config)


def accepted_set(indistinguishable: Sequence[int], ranking: Sequence[tuple[int, float | None]],
                 delta_bic: float) -> tuple[int, ...]:
    """The EGs an accept reports: the indistinguishable set and every candidate within ``delta_bic``.

    ``ranking`` is (EG, ΔB) best first, of the EGs fitted in the accepted cell only. On
    measured patterns texture and profile misfit that no EG explains remain in χ² even
    after scaling by ĉ, so a ΔB of a few tens between EGs in one cell is not proof of their
    absences; they are reported together. EGs fitted in another cell are not: the accept
    has decided the cell (check 4), and an EG of another lattice family would contradict
    it (check 9).
    """
    out = list(indistinguishable)
    out += [eg for eg, d in ranking if d is not None and d < delta_bic and eg not in out]
    return tuple(out)


def undecided_order(
    fitted: Sequence[int], probs: Sequence[float], n_fitted: int, n_head: int = 5
) -> list[int]:
    """The EGs a flagged refined assessment reports, best first: the ``n_fitted`` best
    of the Pawley ranking, then the network's most probable EGs not among them up to
    ``n_head`` in all, then the rest of the Pawley ranking.

    Undecided, the cell itself is in doubt, and every EG ranked in a wrong cell is wrong
    together: below the fit's leader, the network's own picks (from any lattice) are the
    better guesses. On the measured dev set the truth is among the first five for 74 % /
    71 % of the patterns of halves A / B this way, against 59 % / 60 % in the order of
    the fits (``n_fitted`` = 1, the best of 1–5 on either half).
    """
    head = list(dict.fromkeys(int(e) for e in fitted))[: max(n_fitted, 0)]
    order = np.argsort(-np.asarray(probs, float), kind="stable") + 1
    for eg in order:
        if len(head) >= n_head:
            break
        if int(eg) not in head:
            head.append(int(eg))
    return head + [int(e) for e in dict.fromkeys(fitted) if int(e) not in head]
