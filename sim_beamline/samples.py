"""Samples for the simulated beamline: a phase, how strongly it scatters, what else is in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim_beamline.minerals import mineral, mineral_record

__all__ = ["Sample", "hard_sample", "mineral_sample"]


@dataclass(frozen=True)
class Sample:
    """A powder sample on the simulated beamline.

    Parameters
    ----------
    name : str
    record : ratagent.simulation.reflections.ReflectionList
        The main phase.
    cell : six floats or None
        The cell a user would know for it (handed to the agent); None: unknown.
    scattering_power : float
        Counts at the strongest Bragg point per second of counting, relative to the
        detector's ``flux_counts_per_s`` (1: an ordinary sample).
    background : tuple of float
        Chebyshev background coefficients, relative to the strongest Bragg point.
    impurity : ReflectionList, optional
        A second phase, mixed at ``impurity_fraction`` of the integrated intensity.
    """

    name: str
    record: Any
    cell: tuple[float, ...] | None
    scattering_power: float = 1.0
    background: tuple[float, ...] = (0.03,)
    impurity: Any = None
    impurity_fraction: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scattering_power > 0:
            raise ValueError(f"scattering_power must be positive, got {self.scattering_power}")
        if self.cell is not None and len(self.cell) != 6:
            raise ValueError(f"cell must be six numbers (a, b, c, α, β, γ), got {self.cell}")
        if self.impurity_fraction and self.impurity is None:
            raise ValueError(f"impurity_fraction={self.impurity_fraction} needs an impurity phase")


def mineral_sample(name: str, *, d_min: float = 1.0, impurity: str | None = None,
                   impurity_fraction: float = 0.0, **kwargs: Any) -> Sample:
    """A :class:`Sample` of a library mineral (its published cell is the known cell).

    ``d_min`` (Å) is the shortest d-spacing whose reflections are simulated: 1 Å covers a
    Cu tube to 2θ = 100°; a detector that reaches further (a synchrotron at 0.73 Å to
    50° reaches 0.86 Å) needs a smaller one, or its high-angle lines are missing.
    """
    m = mineral(name)
    imp = None if impurity is None else mineral_record(impurity, d_min)
    return Sample(m.name, mineral_record(m.name, d_min), m.cell, impurity=imp,
                  impurity_fraction=impurity_fraction,
                  meta={"formula": m.formula, "sg_number": m.sg_number, "reference": m.reference}, **kwargs)


def hard_sample(name: str = "baddeleyite", *, scattering_power: float = 0.02,
                background: tuple[float, ...] = (0.6,), d_min: float = 1.0) -> Sample:
    """A weakly scattering sample on a high background: at an ordinary count time its
    reflections (the weak separating ones first) are lost in the noise, so the agent has
    to count longer (signal-to-noise grows as √t)."""
    s = mineral_sample(name, d_min=d_min, scattering_power=scattering_power, background=background)
    return Sample(f"{s.name} (weak)", s.record, s.cell, s.scattering_power, s.background, meta=s.meta)
