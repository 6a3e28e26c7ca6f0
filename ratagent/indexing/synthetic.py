"""Line lists computed from a known cell and space group, for tests, benchmarks and checks.

Positions follow Bragg's law, 2θ = 2 arcsin(λ / 2d), with d from the metric of the cell
(:mod:`ratagent.indexing.reduction`); reflections are dropped where gemmi reports them
systematically absent (:func:`ratagent.crystallography.systematically_absent`), and lines
closer than ``merge_deg`` are merged, as a diffractometer would not resolve them.
"""

from __future__ import annotations

import math

import numpy as np

from ratagent.crystallography import systematically_absent
from ratagent.indexing.reduction import cell_from_form, form_from_cell
from ratagent.indexing.trials import monomials

__all__ = ["lines_from_cell", "perturb_lines"]


def lines_from_cell(
    cell: tuple[float, ...] | np.ndarray,
    space_group: int | str,
    wavelength: float,
    two_theta_max_deg: float = 90.0,
    two_theta_min_deg: float = 5.0,
    merge_deg: float = 0.02,
) -> np.ndarray:
    """Distinct allowed 2θ positions (degrees, ascending) of a cell in a space group.

    Parameters
    ----------
    cell : (a, b, c, α, β, γ) in Å and degrees, in the setting of ``space_group``
    space_group : number (standard setting) or H–M symbol (e.g. ``"R -3 c:H"``)
    wavelength : λ in Å
    """
    form = form_from_cell(cell)
    q_max = (2.0 * math.sin(math.radians(two_theta_max_deg) / 2.0) / wavelength) ** 2
    lengths = cell_from_form(form)[:3]
    r = [np.arange(-(int(x * math.sqrt(q_max)) + 1), int(x * math.sqrt(q_max)) + 2) for x in lengths]
    hkl = np.stack(np.meshgrid(*r, indexing="ij"), axis=-1).reshape(-1, 3)
    q = monomials(hkl) @ form
    sel = (q > 0) & (q <= q_max)
    hkl, q = hkl[sel], q[sel]
    q = q[~systematically_absent(space_group, hkl)]
    tth = np.sort(np.degrees(2.0 * np.arcsin(np.sqrt(q) * wavelength / 2.0)))
    tth = tth[tth >= two_theta_min_deg]
    keep = np.concatenate([[True], np.diff(tth) > merge_deg])
    return tth[keep]


def perturb_lines(
    two_theta_deg: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma_deg: float = 0.01,
    zero_shift_deg: float = 0.0,
    n_impurity: int = 0,
    drop_fraction: float = 0.0,
) -> np.ndarray:
    """Observed-like lines: Gaussian position noise, a zero shift, lost weak lines and impurity lines.

    Impurity lines are drawn uniformly between the first and the 15th line, where they
    hurt indexing most.
    """
    tth = np.asarray(two_theta_deg, dtype=float)
    if drop_fraction > 0:
        keep = rng.random(len(tth)) >= drop_fraction
        keep[:2] = True
        tth = tth[keep]
    out = tth + zero_shift_deg + rng.normal(0.0, sigma_deg, len(tth))
    if n_impurity:
        hi = tth[min(14, len(tth) - 1)]
        out = np.concatenate([out, rng.uniform(tth[0], hi, n_impurity)])
    return np.sort(out)
