"""The agent without Bluesky: thresholds, the √t law of the frame check, posterior-only decisions."""

import math
from dataclasses import replace

import numpy as np
import pytest

from ratagent.agent import Agent, AgentConfig, Assessment, frame_snr
from ratagent.patterns import Pattern
from ratagent.testing import tiny_agent


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    # the tiny network is untrained: its crystal-system posterior is no evidence about a cell
    return tiny_agent(tmp_path_factory.mktemp("ckpt"), min_family_probability=0.0)


def _peak_pattern(counts: float, background: float, rng) -> Pattern:
    tth = np.linspace(10, 80, 3501)
    mean = background + counts * np.exp(-0.5 * ((tth - 30) / 0.05) ** 2)
    return Pattern(tth, rng.poisson(mean).astype(float), 1.5406)


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_k", 0),
        ("max_candidates", 0),
        ("dag_radius", -1),
        ("min_peak_snr", 0.0),
        ("accept_probability", 1.5),
        ("min_count_time_factor", 1.0),
        ("max_count_time_s", math.nan),
        ("min_translation_angstrom", -1.0),
        ("min_translation_angstrom", math.inf),
        ("min_cubic_p_angstrom", -0.5),
        ("parameter_penalty", 0.0),
        ("parameter_penalty", math.inf),
        ("posterior_weight", -1.0),
    ],
)
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        AgentConfig(**{field: value})


def test_target_below_minimum_snr_is_rejected():
    with pytest.raises(ValueError, match="target_peak_snr"):
        AgentConfig(min_peak_snr=20, target_peak_snr=10)


def test_frame_snr_grows_as_the_square_root_of_counts():
    rng = np.random.default_rng(1)
    s1 = np.mean([frame_snr(_peak_pattern(400, 100, rng)) for _ in range(20)])
    s4 = np.mean([frame_snr(_peak_pattern(1600, 400, rng)) for _ in range(20)])
    assert s4 / s1 == pytest.approx(2.0, rel=0.05)  # 4× the count time: S × √4


def test_weak_frame_is_remeasured_for_the_predicted_time(agent):
    p = _peak_pattern(30, 20, np.random.default_rng(2))
    a = agent.assess(p, count_time=1.0)
    assert a.verdict == "remeasure"
    s = a.peak_snr
    assert s < agent.config.min_peak_snr
    expected = (agent.config.target_peak_snr / s) ** 2
    assert a.suggested_count_time_s == pytest.approx(min(expected, agent.config.max_count_time_s))
    assert "did not refine" in a.reasons[0]


def test_weak_frame_at_the_cap_is_flagged(agent):
    p = _peak_pattern(30, 20, np.random.default_rng(2))
    a = agent.assess(p, count_time=agent.config.max_count_time_s)
    assert a.verdict == "flag" and a.suggested_count_time_s is None
    assert any("maximum count time" in r for r in a.reasons)


@pytest.mark.parametrize("intensity", [0.0, -1.0], ids=["all zero", "all negative"])
def test_a_frame_without_signal_is_flagged_at_once(agent, intensity):
    """Counting longer cannot help a frame with no diffraction signal: no 60 s re-measure."""
    tth = np.linspace(10, 80, 3501)
    a = agent.assess(Pattern(tth, np.full(tth.size, intensity) - (tth > 40), 1.5406), count_time=1.0)
    assert a.verdict == "flag" and a.suggested_count_time_s is None
    assert a.candidates == () and not a.refined
    assert a.reasons[0].startswith("no diffraction signal")


def test_without_cell_it_says_posterior_only(agent):
    p = _peak_pattern(5000, 50, np.random.default_rng(3))
    a = agent.assess(p, count_time=1.0)
    assert a.refined is False and a.verdict == "flag"  # never accepted without a refined cell
    # one peak cannot be indexed: the agent says so, then falls back to the posterior
    assert a.reasons[0].startswith("no cell given; indexing found no convincing cell")
    assert "posterior only, did not refine" in a.reasons[1]
    probs = [c.probability for c in a.candidates]
    assert probs == sorted(probs, reverse=True) and a.model_id == agent.model_id


def test_a_failing_assessment_becomes_a_flag_with_the_error_text(agent):
    a = agent.assess_safely("not a pattern", count_time=1.0)
    assert a.verdict == "flag" and "TypeError" in a.reasons[0] and a.candidates == ()


def test_bad_count_time_is_named(agent):
    pattern = _peak_pattern(100, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="count_time"):
        agent.assess(pattern, count_time=-1.0)
    # one read from the pattern names its key and its file
    bad = replace(pattern, meta={"source": "run7.xy", "count_time_s": "ten"})
    with pytest.raises(ValueError, match=r"meta\['count_time_s'\] of run7.xy must be a positive number "
                                         r"of seconds, got 'ten'"):
        agent.assess(bad, count_time=None)


def test_assessment_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        Assessment(verdict="maybe", candidates=(), indistinguishable=(), reasons=(), count_time_s=None,
                   suggested_count_time_s=None, model_id=None, refined=False)


def test_agent_needs_a_classifier():
    with pytest.raises(TypeError, match="predict"):
        Agent(object())


def _halite(counts: float, seed: int = 0, two_theta_range: tuple[float, float] = (10, 80)) -> Pattern:
    """NaCl, Fm-3m (EG 94), a = 5.6402 Å (Walker et al., Am. Mineral. 89, 2004), Cu Kα1 only."""
    from ratagent.instrument import Instrument
    from ratagent.simulation import crystal_from_sites, reflection_list, simulate_pattern

    crystal = crystal_from_sites(
        225, (5.6402, 5.6402, 5.6402, 90, 90, 90), [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))], b_iso=1.0
    )
    record = reflection_list(crystal, d_min=1.0)
    return simulate_pattern(
        record,
        Instrument.synchrotron(1.5406, two_theta_min_deg=two_theta_range[0],
                               two_theta_max_deg=two_theta_range[1]),
        np.random.default_rng(seed),
        counts=counts,
        background=(0.05,),
    )


@pytest.mark.slow
def test_flat_posterior_with_a_cell_still_tests_the_cells_own_family(agent):
    """The untrained network proposes noise; with the cell, every cubic EG is ranked and
    Pawley finds F centring (EG 94, Fm-3m): the weak 111, 311 reflections exclude F--c."""
    cell = (5.64, 5.64, 5.64, 90.0, 90.0, 90.0)
    a = agent.assess(_halite(1e4), cell=cell, count_time=1.0)
    assert a.refined
    fitted = {c.eg for c in a.candidates}
    assert set(range(81, 99)) <= fitted
    assert a.best.eg == 94 and a.verdict == "accept", a.summary()
    # the DAG's neighbours of another lattice are named once, together
    lines = [r for r in a.reasons if "not fitted" in r]
    assert len(lines) == (1 if a.meta["skipped"] else 0)
    assert all(f"{eg}" in lines[0] for eg in a.meta["skipped"])


def test_family_sweep_follows_the_cell_metric():
    from ratagent.agent import _family_sweep

    assert _family_sweep((5.64, 5.64, 5.64, 90, 90, 90)) == list(range(81, 99))  # cubic
    assert _family_sweep((4.59, 4.59, 2.96, 90, 90, 90)) == list(range(40, 71))  # tetragonal
    assert _family_sweep((5.1, 9.0, 7.2, 90, 101, 90)) == list(range(1, 7))  # monoclinic


def test_candidates_come_from_the_lattice_family_of_the_cell_metric():
    """A cubic metric admits every EG (a cubic cell is also a monoclinic one), but the
    candidates are cubic; switched off, the restriction keeps every EG the cell admits."""
    from ratagent.agent import _restrict_to_cell

    cubic = (5.64, 5.64, 5.64, 90, 90, 90)
    flat = np.full(99, 1 / 99)
    family = np.flatnonzero(_restrict_to_cell(flat, cubic, metric_family_only=True)) + 1
    admitted = np.flatnonzero(_restrict_to_cell(flat, cubic)) + 1
    assert family.tolist() == list(range(81, 99))
    assert {1, 7, 40, 99}.issubset(admitted.tolist()) and len(admitted) > len(family)
    mono = (5.1, 9.0, 7.2, 90, 101, 90)
    assert (np.flatnonzero(_restrict_to_cell(flat, mono, metric_family_only=True)) + 1).tolist() == list(
        range(1, 7)
    )


def test_an_indexed_lattice_limits_the_candidates_to_its_family():
    """Regression (dev pattern 27, an orthorhombic mineral, EG 29): indexed as orthorhombic
    B with a ≈ b (6.994, 7.000, 6.238 Å), whose axes admit tetragonal EGs; the lattice is
    not tetragonal (a fourfold about c would make B into F), yet only tetragonal EGs were
    fitted on those axes and P 4₂/n was accepted. With the indexed centring the candidates
    are the orthorhombic EGs; a cell given without one keeps the axes' family."""
    from ratagent.agent import _restrict_to_cell

    cell = (6.9936, 6.99999, 6.2381, 90, 90, 90)
    flat = np.full(99, 1 / 99)
    by_axes = np.flatnonzero(_restrict_to_cell(flat, cell, metric_family_only=True)) + 1
    by_lattice = np.flatnonzero(_restrict_to_cell(flat, cell, True, "orthorhombic")) + 1
    assert by_axes.tolist() == list(range(40, 71))  # tetragonal
    assert by_lattice.tolist() == list(range(7, 40))  # orthorhombic
    # a lattice family above what the axes admit is left to the trust step's metric check
    assert (np.flatnonzero(_restrict_to_cell(flat, cell, True, "cubic")) + 1).tolist() == by_axes.tolist()


def test_a_cell_indexed_below_its_metric_keeps_the_candidates_of_both_families():
    """Regression (dev patterns 41 and 43, a monoclinic mineral, EG 5): indexed as
    monoclinic I with β = 90.49° (12.15, 8.002, 5.078 Å), whose metric is orthorhombic
    within the tolerance; only orthorhombic EGs were fitted, so the monoclinic truth could
    not lead.
    The fit decides between both families (the trust step keeps the cell from an accept)."""
    from ratagent.agent import _restrict_to_cell

    cell = (12.15, 8.002, 5.078, 90, 90.49, 90)
    flat = np.full(99, 1 / 99)
    metric_only = np.flatnonzero(_restrict_to_cell(flat, cell, True, "orthorhombic")) + 1
    both = np.flatnonzero(_restrict_to_cell(flat, cell, True, "orthorhombic", "monoclinic")) + 1
    assert metric_only.tolist() == list(range(7, 40))
    assert both.tolist() == list(range(1, 40))
    # an indexed family at or above the metric's adds nothing
    assert (np.flatnonzero(_restrict_to_cell(flat, cell, True, "orthorhombic", "orthorhombic")) + 1
            ).tolist() == metric_only.tolist()


@pytest.mark.slow
def test_without_a_cell_the_agent_indexes_and_refines(agent):
    a = agent.assess(_halite(1e4), count_time=1.0)
    assert a.refined, a.summary()
    assert a.reasons[0].startswith("no cell given; indexed: cubic F"), a.reasons[0]
    a0 = a.meta["cell_from_indexing"][0]
    assert a0 == pytest.approx(5.6402, rel=1e-3)  # Walker et al. 2004
    families = a.meta["indexing_families"]  # the best cell of each family the indexing found
    assert families["cubic"]["rank"] == 1 and families["cubic"]["passes"]
    assert all(f["rank"] > 1 for name, f in families.items() if name != "cubic")
    # 10–80° shows 8 lines of rock salt (331 at 1 % of 200 included): enough for a cubic
    # cell at the shipped 3 lines per parameter (6), too few at 4.5 (9)
    assert agent.config.min_lines_per_parameter == 3.0
    assert a.best.eg == 94 and a.verdict == "accept", a.summary()
    assert a.meta["cell_evidence"]["metric_family"] == "cubic"
    stricter = Agent(agent.classifier, replace(agent.config, min_lines_per_parameter=4.5))
    b = stricter.assess(_halite(1e4), count_time=1.0)
    assert b.best.eg == 94 and b.verdict == "flag", b.summary()
    assert any("the cubic cell rests on 8 indexed lines, fewer than the 9" in r for r in b.reasons), b.reasons
    # undecided: the fit's leader, then the network's most probable EGs
    from ratagent.trust import undecided_order

    probs = agent.classifier.predict(_halite(1e4)).probs
    assert [c.eg for c in b.candidates] == undecided_order(b.meta["fitted_order"], probs, 1)
    assert b.meta["fitted_order"][0] == 94 and "the network's most probable EGs" in b.reasons[-1]


@pytest.mark.slow
def test_of_several_indexed_cells_the_pawley_fits_choose(agent, monkeypatch):
    """Given a wrong tetragonal cell before the right cubic one, the agent refines both and
    keeps the cell whose best fit has the lower criterion; the tetragonal EGs follow the
    cubic ones with their ΔB, and the reasons say the data exclude the wrong cell."""
    wrong, right = (5.64, 5.64, 6.1, 90.0, 90.0, 90.0), (5.6402, 5.6402, 5.6402, 90.0, 90.0, 90.0)
    indexed = [{"crystal_system": system, "centring": "P", "cell": list(cell), "m20": 100.0}
               for cell, system in ((wrong, "tetragonal"), (right, "cubic"))]
    lattices = [("tetragonal", "P"), ("cubic", "P")]
    monkeypatch.setattr(Agent, "_index", lambda self, pattern: (
        [wrong, right], lattices, "indexed: two cells", {"cells_indexed": indexed}))
    a = agent.assess(_halite(1e4), count_time=1.0)
    assert a.meta["cell"] == pytest.approx(list(right)), a.summary()
    assert a.meta["cells_refined"] == [list(wrong), list(right)]
    assert a.best.eg == 94 and a.verdict == "accept", a.summary()
    from ratagent.crystallography import extinction_group

    families = [extinction_group(c.eg).lattice_family for c in a.candidates]
    n_cubic = families.count(families[0])
    assert n_cubic < len(families) and set(families[n_cubic:]) != {families[0]}, families
    assert all(c.delta_bic > 10 and c.pawley_weight is None for c in a.candidates[n_cubic:])
    assert any(r.startswith("cell (5.64, 5.64, 6.1,") and "exclude it" in r for r in a.reasons), a.reasons


def _run(chi2_by_eg: dict[int, float], n_params: int = 20, n_obs: int = 4000):
    """A stand-in RankResult: candidates with the given χ² (best first), as rank() orders them."""
    from types import SimpleNamespace as NS

    from ratagent.crystallography import extinction_group

    cands = [
        NS(eg=eg, evidence=NS(weight=None, delta_bic=chi2 - min(chi2_by_eg.values())),
           result=NS(chi2=chi2, n_params=n_params, n_obs=n_obs, chi2_reduced=chi2 / n_obs, rwp=0.1,
                     setting=extinction_group(eg).symbol))
        for eg, chi2 in sorted(chi2_by_eg.items(), key=lambda t: t[1])
    ]
    return NS(candidates=tuple(cands), best=cands[0])


def test_across_cells_keeps_the_indexing_best_cell_unless_another_is_decisively_better():
    from ratagent.agent import _across_cells

    class Flat:
        def prob(self, eg):
            return 1 / 99

    first, second = (5.0,) * 3 + (90.0,) * 3, (5.0, 5.0, 7.0, 90.0, 90.0, 90.0)
    tie = [(first, _run({94: 4000.0, 86: 4100.0})), (second, _run({70: 3995.0}))]
    cell, _, ranked, reasons = _across_cells(tie, Flat(), min_delta_bic=10.0)
    assert cell == first and [c.eg for c in ranked] == [94, 86, 70]
    assert ranked[2].delta_bic == pytest.approx(-5.0) and "cannot tell the cells apart" in reasons[0]
    clear = [(first, _run({94: 4000.0})), (second, _run({70: 3900.0, 94: 3950.0}))]
    cell, _, ranked, reasons = _across_cells(clear, Flat(), min_delta_bic=10.0)
    assert cell == second and [c.eg for c in ranked] == [70, 94]  # EG 94 once, from the winner
    assert "ΔB = 100.0; the data exclude it" in reasons[0]


def test_indexing_can_be_switched_off(tmp_path):
    off = tiny_agent(tmp_path, index_when_no_cell=False)
    a = off.assess(_halite(1e4), count_time=1.0)
    assert not a.refined and "posterior only, did not refine" in a.reasons[0]


@pytest.mark.slow
def test_a_triclinic_pattern_is_indexed_and_refined_as_triclinic(agent):
    """A simulated P-1 crystal in kyanite's reduced cell (Winter & Ghose 1979), four sites:
    indexed on its Niggli cell, refined in the one triclinic EG (99, P -)."""
    from ratagent.instrument import Instrument
    from ratagent.simulation import crystal_from_sites, reflection_list, simulate_pattern

    cell = (5.5724, 7.1262, 7.8520, 73.97, 89.99, 78.89)
    sites = [("Al", (0.11, 0.21, 0.32)), ("Si", (0.33, 0.71, 0.12)), ("O", (0.62, 0.13, 0.81)),
             ("O", (0.84, 0.42, 0.43))]
    record = reflection_list(crystal_from_sites(2, cell, sites, b_iso=0.5), d_min=1.0)
    beam = Instrument.synchrotron(1.5406, two_theta_min_deg=5, two_theta_max_deg=90)
    pattern = simulate_pattern(record, beam, np.random.default_rng(11), counts=1e4, background=(0.05,))
    a = agent.assess(pattern, count_time=1.0)
    assert a.refined, a.summary()
    assert a.meta["cells_indexed"][0]["crystal_system"] == "triclinic", a.reasons[0]
    np.testing.assert_allclose(a.meta["cells_indexed"][0]["cell"][:3], cell[:3], rtol=2e-3)
    assert a.best.eg == 99, a.summary()


@pytest.mark.slow
def test_no_indexed_cell_holds_atoms_closer_than_crystals_do(agent, rruff_dev):
    """Measured dev pattern 45 (a monoclinic mineral) was indexed as orthorhombic P
    (13.57, 6.41, 1.70 Å): a lattice translation joins like atoms, and no crystal holds
    them 1.7 Å apart. The agent's indexing leaves out cells with one under 2.2 Å."""
    from ratagent.indexing.reduction import niggli_cell
    from ratagent.instrument import Instrument
    from ratagent.patterns import CU_KA1_ANGSTROM

    pattern = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][45], CU_KA1_ANGSTROM)
    a = Agent(agent.classifier, agent.config, instrument=Instrument()).assess(pattern, count_time=None)
    cells = a.meta["indexing"]
    assert cells and agent.config.min_translation_angstrom == 2.2
    assert min(niggli_cell(c["cell"], c["centring"])[0] for c in cells) >= 2.2, cells


@pytest.mark.slow
def test_an_unconvincing_triclinic_cell_puts_eg_99_first(agent, rruff_dev):
    """Measured dev pattern 50 (triclinic, EG 99): no cell convinces, and the best one is
    triclinic (17–18 of 20 lines, M20 ≈ 18). The network ranks EG 99 below P 1 21/c 1-like
    EGs on triclinic patterns, so the flagged list led with a monoclinic EG; the
    triclinic cell's evidence puts EG 99 first, and the verdict stays a flag."""
    from ratagent.instrument import Instrument
    from ratagent.patterns import CU_KA1_ANGSTROM

    pattern = Pattern(rruff_dev["two_theta"], rruff_dev["intensity"][50], CU_KA1_ANGSTROM)
    a = Agent(agent.classifier, agent.config, instrument=Instrument()).assess(pattern, count_time=None)
    assert a.verdict == "flag" and not a.refined, a.summary()
    assert a.meta["indexing"][0]["crystal_system"] == "triclinic"
    assert a.best.eg == 99, a.summary()
    assert any("EG 99 leads" in r for r in a.reasons)
    off = replace(agent.config, unconvincing_triclinic_first=False)
    plain = Agent(agent.classifier, off, instrument=Instrument()).assess(pattern, count_time=None)
    assert plain.best.eg != 99


def test_an_accept_reports_only_egs_fitted_in_its_cell(agent):
    """The accepted set widens with the cell's own candidates within accept_set_delta_bic,
    never with another cell's EGs (no Pawley weight): an accept that passes check 4 at a
    ΔB of 50–60 to a cell of another family must not report that cell's EGs beside its own."""
    from ratagent.agent import Candidate

    def cand(eg, delta, weight):
        return Candidate(eg, "", 0.01, weight, delta)

    out = Assessment(verdict="accept", indistinguishable=(225,), reasons=("fit",), count_time_s=None,
                     suggested_count_time_s=None, model_id=None, refined=True,
                     candidates=(cand(225, 0.0, 0.9), cand(221, 30.0, 0.1), cand(191, 55.0, None)))
    wide = agent._widened(out)
    assert wide.indistinguishable == (225, 221)
    assert "EGs [221] fit within ΔB 60" in wide.reasons[-1]


def test_the_count_time_of_a_frame_is_read_from_its_meta_when_not_given(agent):
    """rank reads meta["count_time_s"] when no count time is given, and the agent's
    decision reads the same one: a frame ranked with a count time is not decided as if
    it had none (a weak frame flagged instead of remeasured; separating reflections
    "below the noise even at the maximum count time" after 1 s)."""
    weak = _peak_pattern(30, 20, np.random.default_rng(2))
    assert agent.assess(weak, count_time=None).verdict == "flag"  # unknown: no time to predict
    a = agent.assess(replace(weak, meta={"count_time_s": 1.0}), count_time=None)
    assert a.count_time_s == 1.0 and a.verdict == "remeasure"
    assert a.suggested_count_time_s == agent.assess(weak, count_time=1.0).suggested_count_time_s
