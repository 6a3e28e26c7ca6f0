"""The trust step: cells in a non-conventional setting of a higher-symmetry lattice, and
the doubts that turn an accept on an indexed cell into a flag."""

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from ratagent.agent import AgentConfig, Assessment, Candidate
from ratagent.crystallography import extinction_group
from ratagent.trust import cell_evidence, doubts, family_of, gate, metric_family

HALITE_A = 5.6402  # NaCl, Fm-3m (Walker et al., Am. Mineral. 89, 2004)
QUARTZ_A, QUARTZ_C = 4.9134, 5.4052  # α-quartz, P3₂21 (Levien et al., Am. Mineral. 65, 920 (1980))
RUTILE_A, RUTILE_C = 4.5937, 2.9587  # TiO₂, P4₂/mnm (Burdett et al., JACS 109, 3639 (1987))
# Mg₂SiO₄, Pbnm (Smyth & Hazen, Am. Mineral. 58, 588 (1973))
FORSTERITE = (4.7535, 10.1943, 5.9807, 90, 90, 90)


@pytest.mark.parametrize(
    "cell, centring, family",
    [
        # the cubic F lattice of halite described as orthorhombic I: a/√2, a, a/√2
        ((HALITE_A / math.sqrt(2), HALITE_A, HALITE_A / math.sqrt(2), 90, 90, 90), "I", "cubic"),
        ((HALITE_A,) * 3 + (90,) * 3, "F", "cubic"),
        # quartz's hexagonal lattice as a monoclinic cell (a, c, a, 90, 120, 90)
        ((QUARTZ_A, QUARTZ_C, QUARTZ_A, 90, 120, 90), "P", "hexagonal"),
        # rutile's tetragonal lattice as a monoclinic cell with β = 135°: a, c, a₂ − a₁
        ((RUTILE_A, RUTILE_C, RUTILE_A * math.sqrt(2), 90, 135, 90), "P", "tetragonal"),
        (FORSTERITE, "P", "orthorhombic"),
        ((8.15, 12.87, 7.11, 93.5, 116.4, 90.3), "P", "triclinic"),  # albite-like, no symmetry
    ],
)
def test_metric_family_of_published_lattices_in_any_setting(cell, centring, family):
    assert metric_family(cell, centring, tolerance_deg=0.5) == family


def test_a_slightly_distorted_metric_needs_the_tolerance():
    """a/b = 1.005: a 2-fold along [110] is 0.29° oblique, tetragonal only within that."""
    cell = (5.000, 5.025, 7.0, 90, 90, 90)
    assert metric_family(cell, "P", 0.1) == "orthorhombic"
    assert metric_family(cell, "P", 0.5) == "tetragonal"


def test_family_of_trigonal_is_hexagonal():
    assert family_of("trigonal") == "hexagonal" and family_of("cubic") == "cubic"


def _meta(cell, system, centring, m20=100.0, chi2_reduced=2.0, others=(), n_lines=20, n_indexed=None,
          n_unindexed_strong=0, eg=None):
    """An assessment's meta as the agent writes it: the indexed cells and their best fits
    (the leading EG in each: ``eg``, else the first EG of the cell's lattice family)."""
    cells = [(cell, system, centring, chi2_reduced * 4000), *others]
    return {
        "cell": list(cell),
        "cell_from_indexing": list(cell),
        "cells_indexed": [{"crystal_system": s, "centring": c, "cell": list(x), "m20": m20,
                           "n_lines": n_lines, "n_indexed": n_lines if n_indexed is None else n_indexed,
                           "n_unindexed_strong": n_unindexed_strong}
                          for x, s, c, _ in cells],
        "cell_fits": [{"cell": list(x), "chi2": chi2, "chi2_reduced": chi2 / 4000, "n_params": 30,
                       "n_obs": 4000, "eg": eg or _FIRST_EG[family_of(s)]} for x, s, _, chi2 in cells],
        "cells_refined": [list(x) for x, _, _, _ in cells],
    }


#: The first EG of each lattice family.
_FIRST_EG = {}
for _eg in range(99, 0, -1):
    _FIRST_EG[extinction_group(_eg).lattice_family] = _eg


def _probs_on(egs):
    p = np.full(99, 1e-4)
    p[np.asarray(egs) - 1] = 1.0
    return p / p.sum()


CUBIC_EGS = range(81, 99)
CONFIG = AgentConfig()


def test_a_conventional_cell_the_network_agrees_with_leaves_no_doubt():
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F")
    evidence, why = gate(meta, _probs_on(CUBIC_EGS), CONFIG)
    assert why == [] and evidence["metric_family"] == "cubic" and evidence["cell_delta_bic"] == math.inf


@pytest.mark.parametrize(
    "change, words",
    [
        ({"m20": 5.0}, "M20 = 5"),
        ({"n_lines": 5}, "cubic cell rests on 5 indexed lines, fewer than the 6"),  # 3 × (1 + 1)
        ({"chi2_reduced": 9.0}, "χ²_ν = 9.00"),
        ({"cell": (HALITE_A / math.sqrt(2), HALITE_A, HALITE_A / math.sqrt(2), 90, 90, 90),
          "system": "orthorhombic", "centring": "I"}, "not the conventional cell"),
    ],
)
def test_each_doubt_is_named(change, words):
    args = {"cell": (HALITE_A,) * 3 + (90,) * 3, "system": "cubic", "centring": "F"} | change
    meta = _meta(args.pop("cell"), args.pop("system"), args.pop("centring"), **args)
    _, why = gate(meta, _probs_on(CUBIC_EGS), CONFIG)
    assert any(words in w for w in why), why


@pytest.mark.parametrize(
    "config, change, words",
    [
        (AgentConfig(max_accept_unindexed_strong=1), {"n_unindexed_strong": 2},
         "leaves 2 strong lines unindexed, more than the 1"),
        (AgentConfig(min_indexed_fraction=0.9), {"n_indexed": 15}, "indexes 15 of the first 20 lines"),
    ],
)
def test_lines_the_cell_leaves_out_are_doubted(config, change, words):
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F", **change)
    assert gate(meta, _probs_on(CUBIC_EGS), AgentConfig())[1] == []
    _, why = gate(meta, _probs_on(CUBIC_EGS), config)
    assert any(words in w for w in why), why


def _with_rival(meta, cell, system, centring, m20, n_indexed=20):
    rival = {"crystal_system": system, "centring": centring, "cell": list(cell), "m20": m20, "n_lines": 20,
             "n_indexed": n_indexed, "n_unindexed_strong": 0, "passes": True}
    return {**meta, "indexing": [*meta["cells_indexed"], rival]}


def test_a_rival_lattice_indexing_the_same_lines_is_doubted():
    """Pseudo-cubic tetragonal minerals (dev patterns 20–22): a tetragonal I cell indexed the
    17 lines of the cubic I cell that was refined and accepted, with a higher M20."""
    cubic = (13.73,) * 3 + (90,) * 3
    meta = _with_rival(_meta(cubic, "cubic", "I", m20=101.0), (13.73, 13.73, 6.14, 90, 90, 90),
                       "tetragonal", "I", m20=115.0)
    config = AgentConfig(rival_m20_fraction=1.0)
    evidence, why = gate(meta, _probs_on(CUBIC_EGS), config)
    assert evidence["rival_family"] == "tetragonal"
    assert evidence["rival_m20_ratio"] == pytest.approx(115 / 101)
    assert any("a tetragonal cell indexes as many lines with 114% of this cell's M20" in w for w in why), why
    assert gate(meta, _probs_on(CUBIC_EGS), AgentConfig(rival_m20_fraction=1.2))[1] == []
    fewer = _with_rival(_meta(cubic, "cubic", "I", m20=101.0), (13.73, 13.73, 6.14, 90, 90, 90),
                        "tetragonal", "I", m20=115.0, n_indexed=15)
    assert gate(fewer, _probs_on(CUBIC_EGS), config)[1] == []


def test_a_lower_description_of_the_same_lattice_is_no_rival():
    """The orthohexagonal C cell (a, a√3, c) of a hexagonal lattice has a hexagonal metric."""
    a, c = 4.913, 5.405  # quartz
    meta = _with_rival(_meta((a, a, c, 90, 90, 120), "hexagonal", "P", m20=80.0),
                       (a, a * math.sqrt(3), c, 90, 90, 90), "orthorhombic", "C", m20=90.0)
    evidence, why = gate(meta, _probs_on(range(60, 81)), AgentConfig(rival_m20_fraction=1.0,
                                                                     min_family_probability=0.0))
    assert evidence["rival_m20_ratio"] == 0.0 and why == []


def test_a_cell_the_network_finds_implausible_is_doubted():
    config = AgentConfig(min_family_probability=0.2)
    _, why = gate(_meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F"), _probs_on([1, 2, 3]), config)
    assert any("network gives the cubic family p = 0.00 < 0.2" in w for w in why), why


def test_a_rival_cell_of_another_family_within_the_margin_is_doubted():
    rival = ((HALITE_A, HALITE_A, 6.1, 90, 90, 90), "tetragonal", "P", 2.0 * 4000 + 5.0)
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F", others=[rival])
    evidence, why = gate(meta, _probs_on(CUBIC_EGS), CONFIG)
    assert evidence["cell_delta_bic"] == pytest.approx(5.0 / 2.0)  # χ² over ĉ = the best χ²_ν
    assert any("the data do not decide the cell" in w for w in why), why
    far = ((HALITE_A, HALITE_A, 6.1, 90, 90, 90), "tetragonal", "P", 2.0 * 4000 + 500.0)
    assert gate(_meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F", others=[far]),
                _probs_on(CUBIC_EGS), CONFIG)[1] == []


def test_a_leading_eg_of_another_lattice_family_is_doubted():
    """An orthorhombic B lattice with a ≈ b (dev pattern 27) fitted best by a tetragonal EG."""
    meta = _meta((6.9936, 6.99999, 6.2381, 90, 90, 90), "orthorhombic", "B", eg=55)
    evidence, why = gate(meta, _probs_on([55]), CONFIG)
    assert evidence["leader_family"] == "tetragonal" and evidence["metric_family"] == "orthorhombic"
    assert any("leading EG 55 is tetragonal, the indexed lattice orthorhombic" in w for w in why), why
    assert gate(meta, _probs_on([55]), replace(CONFIG, require_leader_in_cell_family=False))[1] == []


def test_an_untraceable_cell_is_doubted():
    evidence, why = gate({"cell": [5.0] * 3 + [90] * 3}, _probs_on(CUBIC_EGS), CONFIG)
    assert evidence is None and "cannot be traced" in why[0]
    assert cell_evidence({}, _probs_on(CUBIC_EGS), 0.5) is None


def test_doubts_follow_the_thresholds():
    evidence = {"m20": 25.0, "n_lines": 9, "n_indexed": 8, "n_unindexed_strong": 1, "family": "cubic",
                "metric_family": "cubic", "family_probability": 0.3, "chi2_reduced": 3.0,
                "cell_delta_bic": 20.0, "rival_m20_ratio": 1.2, "rival_family": "tetragonal", "leader": 92,
                "leader_family": "cubic", "network_rank": 25}
    loose = SimpleNamespace(min_accept_m20=20, min_lines_per_parameter=4, metric_tolerance_deg=0.5,
                            min_family_probability=0.2, min_cell_delta_bic=10, max_accept_chi2_reduced=4,
                            max_accept_unindexed_strong=1, min_indexed_fraction=0.8, rival_m20_fraction=None,
                            max_network_rank=None, require_leader_in_cell_family=True)
    assert doubts(evidence, loose) == []
    strict = SimpleNamespace(min_accept_m20=30, min_lines_per_parameter=5, metric_tolerance_deg=0.5,
                             min_family_probability=0.5, min_cell_delta_bic=50, max_accept_chi2_reduced=2,
                             max_accept_unindexed_strong=0, min_indexed_fraction=0.9, rival_m20_fraction=1.0,
                             max_network_rank=20, require_leader_in_cell_family=True)
    assert len(doubts(evidence, strict)) == 9  # 9 lines < 5 × (1 + 1) for a cubic cell, and 8 more


def test_a_pseudo_cubic_tetragonal_mineral_fitted_as_cubic_is_doubted_by_the_network_rank():
    """A tetragonal mineral whose cell is metrically cubic (dev patterns 20–22, EG 70) was
    accepted as cubic EG 92, which the network ranks 71st of 99."""
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F")
    meta["cell_fits"][0]["eg"] = 92
    probs = np.linspace(1.0, 0.01, 99)  # the network's order: EG 1 first, EG 99 last
    config = AgentConfig(max_network_rank=40, min_family_probability=0.0)
    evidence, why = gate(meta, probs, config)
    assert evidence["leader"] == 92 and evidence["network_rank"] == 92
    assert any("the network puts EG 92 at rank 92 of 99 (at most 40" in w for w in why), why
    assert gate(meta, probs[::-1], config)[1] == []  # ranked 8th: no doubt


def test_a_doubtful_indexed_cell_never_yields_accept(tmp_path):
    """The agent's last step: an accept refined in the orthorhombic-I description of
    halite's cubic lattice becomes a flag that names the doubt and the competing answers."""
    from ratagent.testing import tiny_agent

    agent = tiny_agent(tmp_path)
    ortho = (HALITE_A / math.sqrt(2), HALITE_A, HALITE_A / math.sqrt(2), 90, 90, 90)
    accepted = Assessment(
        verdict="accept", candidates=(Candidate(34, "I m m m", 0.3, 1.0, 0.0, 0.1, 2.0),),
        indistinguishable=(34,), reasons=("indexed", "EG 34 fits best"), count_time_s=None,
        suggested_count_time_s=None, model_id=None, refined=True,
        meta=_meta(ortho, "orthorhombic", "I"),
    )
    posterior = SimpleNamespace(probs=_probs_on(range(1, 100)))
    out = agent._trusted(accepted, posterior)
    assert out.verdict == "flag"
    assert any("not the conventional cell" in r for r in out.reasons), out.reasons
    assert out.reasons[-1].startswith("not decided: cells (3.988, 5.64, 3.988") and "EG 34" in out.reasons[-1]
    assert out.meta["verdict_before_trust"] == "accept"


def test_an_accept_reports_every_eg_within_the_set_margin():
    from ratagent.trust import accepted_set

    ranking = [(29, 0.0), (33, 12.0), (26, 45.0), (55, 80.0), (54, None)]
    assert accepted_set((29,), ranking, 10.0) == (29,)
    assert accepted_set((29,), ranking, 60.0) == (29, 33, 26)
    assert accepted_set((29, 55), ranking, 60.0) == (29, 55, 33, 26)  # the given set first


def test_an_undecided_ranking_keeps_the_fits_leader_then_the_networks_picks():
    from ratagent.trust import undecided_order

    probs = _probs_on([62, 14, 4])  # the network's top three (ties broken by EG number)
    fitted = [33, 29, 26, 62, 7]
    assert undecided_order(fitted, probs, 1) == [33, 4, 14, 62, 1, 29, 26, 7]
    assert undecided_order(fitted, probs, 2) == [33, 29, 4, 14, 62, 26, 7]
    assert undecided_order(fitted, probs, 5) == fitted  # the fits fill the head: their order
    assert undecided_order([], probs, 1)[:3] == [4, 14, 62]  # nothing fitted: the network's order


def test_only_indexed_lines_fix_the_cell():
    """Rock salt at 1 s: 7 lines indexed, and a noise line beside them in the merit (M8).
    At 4 lines per parameter a cubic cell needs 8: the unindexed line does not make up the
    count."""
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F", n_lines=8, n_indexed=7)
    strict = AgentConfig(min_lines_per_parameter=4.0)
    _, why = gate(meta, _probs_on(CUBIC_EGS), strict)
    assert any("cubic cell rests on 7 indexed lines, fewer than the 8" in w for w in why), why
    meta = _meta((HALITE_A,) * 3 + (90,) * 3, "cubic", "F", n_lines=8, n_indexed=8)
    assert gate(meta, _probs_on(CUBIC_EGS), strict)[1] == []
