"""End to end: simulated patterns of minerals with published structures → peaks → cell.

Structures (space group, cell, asymmetric unit) as published: rutile TiO₂ (Baur & Khan,
Acta Cryst. B27, 2133 (1971)), corundum α-Al₂O₃ (Lewis, Schwarzenbach & Flack, Acta
Cryst. A38, 733 (1982)), calcite CaCO₃ (Maslen, Streltsov & Streltsova, Acta Cryst. B49,
636 (1993)), α-quartz SiO₂ (Le Page & Donnay, Acta Cryst. B32, 2456 (1976)). Each is
rendered by the simulator on a Cu Kα1/Kα2 tube with Poisson noise, a zero shift and
3 % of another of these minerals as an impurity, and the published cell must come back
(same lattice within 0.1 % on d) as the best convincing cell.
"""

import numpy as np
import pytest

from ratagent.indexing import find_peaks, index, same_lattice
from ratagent.instrument import Instrument
from ratagent.simulation import crystal_from_sites, reflection_list, simulate_pattern

#: name: (space group, cell, sites, lattice system expected, centring of the cell)
MINERALS = {
    "rutile": (
        136,
        (4.5937, 4.5937, 2.9587, 90, 90, 90),
        [("Ti", (0.0, 0.0, 0.0)), ("O", (0.3048, 0.3048, 0.0))],
        "tetragonal",
        "P",
    ),
    "corundum": (
        167,
        (4.7589, 4.7589, 12.991, 90, 90, 120),
        [("Al", (0.0, 0.0, 0.35216)), ("O", (0.30624, 0.0, 0.25))],
        "trigonal",
        "R",
    ),
    "calcite": (
        167,
        (4.9896, 4.9896, 17.0610, 90, 90, 120),
        [("Ca", (0.0, 0.0, 0.0)), ("C", (0.0, 0.0, 0.25)), ("O", (0.25706, 0.0, 0.25))],
        "trigonal",
        "R",
    ),
    "quartz": (
        154,
        (4.9134, 4.9134, 5.4052, 90, 90, 120),
        [("Si", (0.4697, 0.0, 0.0)), ("O", (0.4135, 0.2669, 0.1191))],
        "hexagonal",
        "P",
    ),
}
_IMPURITY = {"rutile": "calcite", "corundum": "quartz", "calcite": "rutile", "quartz": "corundum"}
#: Cases of the test below that take several seconds each (the whole suite runs them).
SLOW = ("corundum", "rutile", "calcite", "quartz")


def _record(name):
    sg, cell, sites, _, _ = MINERALS[name]
    crystal = crystal_from_sites(sg, cell, sites, b_iso=0.5)
    return reflection_list(crystal, d_min=1.0, name=name)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MINERALS],
)
def test_published_cell_recovered_from_a_simulated_pattern_with_an_impurity(name):
    _, cell, _, system, centring = MINERALS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    inst = Instrument(zero_shift_deg=0.02)
    pattern = simulate_pattern(
        _record(name),
        inst,
        rng,
        counts=2e4,
        background=(0.05,),
        impurity=_record(_IMPURITY[name]),
        impurity_fraction=0.03,
    )
    result = index(find_peaks(pattern, instrument=inst))
    assert result.convincing, str(result)
    best = result.best
    assert same_lattice(best.cell, cell, 1e-3, best.centring, centring), str(result)
    assert best.crystal_system == system
    assert best.zero_shift_deg == pytest.approx(0.02, abs=0.01)
