"""Simulated patterns with a known EG and cell, made by :mod:`ratagent.simulation`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ratagent.crystallography import crystal_system, sg_to_eg
from ratagent.instrument import Instrument
from ratagent.patterns import Pattern
from ratagent.simulation import random_record, simulate_pattern
from ratagent.simulation.lattice import strain_cell

CLEAN_COUNTS = 1e5


@dataclass(frozen=True)
class Case:
    pattern: Pattern
    true_cell: np.ndarray
    start_cell: np.ndarray  # the true cell strained by up to ``strain``
    eg: int
    sg: int


def make_case(
    sg: int,
    *,
    counts: float | None,
    seed: int,
    strain: float = 0.005,
    background: float = 0.05,
    instrument: Instrument | None = None,
) -> Case:
    rng = np.random.default_rng(seed)
    inst = instrument or Instrument()
    rec = random_record(rng, sg_number=sg, d_min=1.0)
    pat = simulate_pattern(rec, inst, rng, counts=counts, background=(background,))
    if counts is None:  # noise-free, but weighted as a 10⁵-count measurement would be
        scaled = pat.intensity * CLEAN_COUNTS
        pat = Pattern(pat.two_theta, scaled, pat.wavelength, sigma=np.sqrt(np.maximum(scaled, 1.0)))
    start = strain_cell(rec.cell, crystal_system(sg), strain, rng) if strain else rec.cell.copy()
    return Case(pat, rec.cell, start, sg_to_eg(sg), sg)


@pytest.fixture(scope="session")
def instrument() -> Instrument:
    return Instrument()
