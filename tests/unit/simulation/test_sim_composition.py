"""Element statistics of random structures: the ICSD composition and the legacy pool."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from ratagent.simulation import bank_settings, composition, lattice, read_shard, write_bank
from ratagent.simulation.bank import shard_path, write_shard
from ratagent.simulation.structures import ICSD_ELEMENT_COUNTS, Composition, random_crystal


def test_icsd_table_is_pymatgen_occurrence_summed_over_oxidation_states():
    yaml = pytest.importorskip("yaml")
    from importlib.resources import files

    pytest.importorskip("pymatgen.core")
    raw = yaml.safe_load((files("pymatgen.core") / "icsd_bv.yaml").read_text())["occurrence"]
    expected = Counter()
    for species, n in raw.items():
        expected[re.match(r"[A-Z][a-z]?", species).group(0)] += n
    icsd = composition("icsd")
    assert dict(zip(icsd.elements, icsd.weights, strict=True)) == pytest.approx(dict(expected))


def test_oxygen_leads_the_icsd_occurrences():
    icsd = composition("icsd")
    w = np.asarray(icsd.weights) / sum(icsd.weights)
    assert icsd.elements[0] == "O" and 0.29 < w[0] < 0.31  # O is 30 % of the occurrences
    assert len(icsd.elements) == 75


def _follows(seen: Counter, pairs, n: int) -> None:
    total = sum(w for _, w in pairs)
    for k, weight in pairs:
        p = weight / total
        assert abs(seen[k] - n * p) < 4 * np.sqrt(n * p * (1 - p)), (k, seen[k], n * p)


def test_draw_follows_the_icsd_element_counts():
    icsd = composition("icsd")
    rng = np.random.default_rng(11)
    n = 4000
    draws = [icsd.draw(rng) for _ in range(n)]
    assert all(len(set(d)) == len(d) for d in draws)  # distinct elements
    _follows(Counter(len(d) for d in draws), ICSD_ELEMENT_COUNTS, n)
    # at most two: the elemental and binary counts keep their ratio
    capped = Counter(len(icsd.draw(rng, 2)) for _ in range(n))
    _follows(capped, ICSD_ELEMENT_COUNTS[:2], n)
    two_sites = [random_crystal(1, rng, max_sites=2, elements=icsd) for _ in range(50)]
    assert {len(set(c.elements)) for c in two_sites} <= {1, 2}


def test_each_drawn_element_takes_a_site_in_p1():
    # in P1 every site is one atom and placement rarely fails: the structure holds the
    # elements drawn, so its distinct elements follow the ICSD counts (as the draw does)
    icsd = composition("icsd")
    rng = np.random.default_rng(3)
    n_distinct = Counter(len(set(random_crystal(1, rng, elements=icsd).elements)) for _ in range(300))
    assert n_distinct[1] < 0.06 * 300  # ICSD: 1.2 % elemental; the legacy pool gives about 40 %
    assert n_distinct[3] + n_distinct[4] + n_distinct[5] > 0.6 * 300  # ICSD: 78 %


def test_a_structure_holds_the_elements_drawn_when_every_site_is_placed():
    # P1 sites are single atoms in a cell scaled to them: the first k sites take the k
    # elements that the same random stream draws
    icsd = composition("icsd")
    whole = 0
    for seed in range(20):
        replay = np.random.default_rng(seed)
        lattice.random_cell("triclinic", 1.0, replay)
        replay.uniform(10.0, 22.0)  # volume per atom
        drawn = set(icsd.draw(replay, 5))
        placed = set(random_crystal(1, np.random.default_rng(seed), elements=icsd).elements)
        assert placed <= drawn, seed
        whole += placed == drawn
    assert whole >= 18


def test_legacy_pool_draws_are_unchanged():
    # the random streams of banks written before compositions existed (regression)
    c = random_crystal(14, np.random.default_rng(5))
    assert c.elements[:6] == ("Si", "Si", "Fe", "Fe", "Fe", "Fe") and len(c) == 10
    np.testing.assert_allclose(c.cell, [3.5652, 6.2348, 6.2685, 90.0, 105.4598, 90.0], atol=1e-4)
    assert composition("pool") is None


def test_composition_errors_name_the_value():
    with pytest.raises(ValueError, match="'ccdc'"):
        composition("ccdc")
    with pytest.raises(ValueError, match=r"'tiny': element counts must lie in 1–2, got \[3\]"):
        Composition("tiny", ((3, 1.0),), ("O", "Si"), (1.0, 1.0))
    with pytest.raises(ValueError, match="element weights must be finite and positive"):
        Composition("zero", ((1, 1.0),), ("O", "Si"), (1.0, 0.0))
    with pytest.raises(ValueError, match="count weights must be finite, at least 0 and not all 0"):
        Composition("none", ((1, 0.0), (2, 0.0)), ("O", "Si"), (1.0, 1.0))
    with pytest.raises(ValueError, match="no element count up to 1"):
        Composition("pairs", ((2, 1.0),), ("O", "Si"), (1.0, 1.0)).draw(np.random.default_rng(0), 1)


def test_bank_records_its_composition_and_resumes_only_as_begun(tmp_path):
    bank = tmp_path / "icsd"
    write_bank(bank, 10, shard_size=5, seed=2, structures="icsd", workers=1, progress=False)
    assert bank_settings(bank) == {"seed": 2, "d_min": 1.0, "balance": "eg", "structures": "icsd"}
    first = read_shard(shard_path(bank, 1))
    shard_path(bank, 1).unlink()
    for other in ({"structures": "pool"}, {"seed": 3}, {"d_min": 1.2}, {"balance": "sg"}):
        asked = {"seed": 2, "structures": "icsd"} | other
        match = rf"shard-00000\.npz was written with other settings.*{next(iter(other))}"
        with pytest.raises(ValueError, match=match):
            write_bank(bank, 10, shard_size=5, workers=1, progress=False, **asked)
    write_bank(bank, 10, shard_size=5, seed=2, structures="icsd", workers=1, progress=False)
    for x, y in zip(first, read_shard(shard_path(bank, 1)), strict=True):  # resumed as drawn
        assert x.sg_number == y.sg_number
        np.testing.assert_array_equal(x.f2, y.f2)
    with pytest.raises(ValueError, match="structures must be one of"):
        write_bank(tmp_path / "x", 10, structures="ccdc", workers=1, progress=False)


def test_shard_written_before_compositions_reads_as_pool(tmp_path):
    path = write_shard(tmp_path, 0, 3, seed=1)
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "structures"}
    np.savez(path, **old)
    assert bank_settings(tmp_path)["structures"] == "pool"


def test_bank_command_names_an_unknown_composition(tmp_path, capsys):
    from training.__main__ import main

    assert main(["bank", str(tmp_path / "b"), "--n", "4", "--structures", "ccdc"]) == 2
    assert "structures must be one of ('pool', 'icsd'), got 'ccdc'" in capsys.readouterr().err
    assert not list((tmp_path / "b").glob("shard-*.npz"))
