"""The mineral library against published bond lengths, and the detector's counting statistics."""

import numpy as np
import pytest

from ratagent.crystallography import crystal_system
from ratagent.instrument import Instrument
from ratagent.simulation import lattice
from sim_beamline import MINERALS, PowderDetector, mineral_sample
from sim_beamline.minerals import mineral_crystal

# Shortest interatomic distance, Å (cation–anion; S–S in pyrite, marcasite), from the structure papers.
BONDS = {
    "halite": 2.820, "periclase": 2.106, "fluorite": 2.366, "sphalerite": 2.342, "pyrite": 2.16,
    "spinel": 1.92, "cuprite": 1.849, "rutile": 1.95, "anatase": 1.93, "zircon": 1.62,
    "chalcopyrite": 2.26, "zincite": 1.98, "graphite": 1.42, "fluorapatite": 1.53, "quartz": 1.61,
    "calcite": 1.28, "corundum": 1.86, "dolomite": 1.28, "forsterite": 1.61, "marcasite": 2.21,
    "diopside": 1.59, "baddeleyite": 2.05, "kyanite": 1.62,
}  # fmt: skip


def _shortest(name):
    c = mineral_crystal(name)
    basis = np.linalg.cholesky(lattice.metric_tensor(c.cell))
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    d = c.frac[:, None, None, :] - c.frac[None, :, None, :] + shifts[None, None]
    dist = np.linalg.norm(d @ basis, axis=-1)
    n = len(c.frac)
    dist[np.arange(n), np.arange(n), 13] = np.inf
    return dist.min()


def test_library_has_twenty_minerals_in_every_crystal_system():
    assert len(MINERALS) >= 20
    systems = {crystal_system(m.sg_number) for m in MINERALS.values()}
    assert systems == {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal",
                       "cubic"}
    assert all(m.reference for m in MINERALS.values())


@pytest.mark.parametrize("name", sorted(BONDS))
def test_structures_have_their_published_bond_lengths(name):
    assert _shortest(name) == pytest.approx(BONDS[name], abs=0.03)


def test_counts_scale_with_count_time_and_noise_is_poisson():
    det = PowderDetector(name="d", instrument=Instrument(two_theta_min_deg=20, two_theta_max_deg=40,
                                                         step_deg=0.02), rng=np.random.default_rng(0))
    det.sample = mineral_sample("halite")
    f1 = np.mean([det.frame(1.0) for _ in range(30)], axis=0)
    f4 = np.array([det.frame(4.0) for _ in range(30)])
    assert f4.mean(axis=0).sum() / f1.sum() == pytest.approx(4.0, rel=0.01)
    bright = f4.mean(axis=0) > 100
    ratio = f4.var(axis=0)[bright] / f4.mean(axis=0)[bright]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.3)  # Poisson: variance = mean


def test_unknown_mineral_names_the_library():
    with pytest.raises(ValueError, match="halite"):
        mineral_sample("unobtainium")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1000, 1003])
def test_pseudo_cubic_chalcopyrite_is_never_accepted_with_a_wrong_eg(seed):
    """Regression (`benchmarks/beamline_minerals.py`): chalcopyrite, I-42d (EG 65), with
    c = 10.42 ≈ 2a = 10.58 Å: its indexed cell has a cubic metric within 1° of obliquity,
    not within 0.5°. With the metric tolerance at 0.5° (what half A of the dev set
    preferred by one accept) the default agent accepted EG 63 on 5 of 5 seeds at 1 s; at
    the shipped tolerance the cell is not trusted."""
    from ratagent.agent import Agent
    from ratagent.crystallography import sg_to_eg
    from ratagent.model import load
    from ratagent.patterns import Pattern

    inst = Instrument()
    det = PowderDetector(name="det", instrument=inst, rng=np.random.default_rng(seed))
    det.sample = mineral_sample("chalcopyrite")
    a = Agent(load(), instrument=inst).assess(
        Pattern(inst.two_theta, det.frame(1.0), inst.wavelengths_angstrom[0]), count_time=1.0)
    truth = sg_to_eg(mineral_crystal("chalcopyrite").sg_number)
    assert a.verdict != "accept" or truth in (a.candidates[0].eg, *a.indistinguishable), a.summary()


def test_a_synchrotron_pattern_of_diopside_is_indexed_in_its_c2c_cell():
    """Regression (`benchmarks/beamline_minerals.py --instrument synchrotron`): diopside,
    C2/c, a = 9.746, b = 8.899, c = 5.251 Å, β = 105.63° (the library's published cell), at
    0.7293 Å with lines 0.017° wide. In the laboratory window of 0.03° a monoclinic P
    cell (6.63, 8.90, 6.31 Å, β = 103°) indexing 18 of the first 20 lines led, the C2/c
    cell was not among the five best, and the default agent accepted EG 2 on 5 of 5
    seeds. In a window as wide as the lines the C2/c cell indexes all 20 and leads."""
    from ratagent.indexing import find_peaks, index, line_tolerance, same_lattice
    from ratagent.patterns import Pattern

    beam = Instrument.synchrotron(0.7293, two_theta_min_deg=2.0, two_theta_max_deg=50.0, step_deg=0.005,
                                  u_deg2=0.0008, v_deg2=-0.0002, w_deg2=0.0002, x_deg=0.005, y_deg=0.003)
    det = PowderDetector(name="det", instrument=beam, rng=np.random.default_rng(1000))
    det.sample = mineral_sample("diopside")
    peaks = find_peaks(Pattern(beam.two_theta, det.frame(1.0), 0.7293))
    assert 0.012 < line_tolerance(peaks) < 0.02
    published = det.sample.cell

    def found(result, k):
        return any(same_lattice(c.cell, published, 1e-3, c.centring, "C") for c in result.candidates[:k])

    result = index(peaks)
    assert result.convincing and found(result, 1), str(result)
    assert result.candidates[0].n_indexed == 20
    assert not found(index(peaks, tolerance_deg=0.03), 5)  # the window it was found wanting in
