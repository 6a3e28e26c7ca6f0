"""Batched rendering of reflection lists into powder patterns (torch, CPU or GPU).

Algorithm (:func:`render`)
--------------------------
1. Pad the batch's reflection lists to a common length N with a mask (:func:`collate`).
2. For each wavelength line ℓ: d from hkl and the (possibly strained) cell through
   the metric tensor, Bragg 2θ, shifted by zero and displacement (:func:`peak_table`).
3. Integrated intensity of each peak
   I = scale · r_ℓ · m · |F|² · LP(2θ) · P_MD, with P_MD the March–Dollase factor
   averaged over the reflection's Laue equivalents.
4. Windowed profiles (:func:`render_peaks`): each peak only touches the grid points
   within ± ``window_fwhm`` · Γ of its centre. Peaks are bucketed by window size; in
   each bucket one tensor (peaks × window) of TCH pseudo-Voigt values (times the
   asymmetry factor) is scatter-added into the (B, G) output. The truncated profile
   is divided by its analytic area inside the window, so the area of every peak on
   the grid is its integrated intensity I (units: intensity · degree⁻¹).

The device and dtype follow the batch's tensors (float32 by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ratagent.instrument import Instrument
from ratagent.simulation import physics, symmetry
from ratagent.simulation.reflections import ReflectionList

__all__ = ["PatternParams", "ReflectionBatch", "collate", "peak_table", "render", "render_peaks"]

# Window half-widths in grid points; a peak uses the smallest bucket that holds its
# window, so on average the window is at most ~20 % wider than needed.
_WINDOW_BUCKETS = (2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024)
_GAUSS_NORM = 2.0 * math.sqrt(math.log(2.0) / math.pi)  # Γ · G(0) of a unit-area Gaussian
_GAUSS_K = 4.0 * math.log(2.0)
_ERF_K = 2.0 * math.sqrt(math.log(2.0))
_CORE_FWHM = 3.0  # half-width, in Γ, of the window of the Gaussian part and the asymmetry
_MAX_ELEMENTS = 1 << 23  # peaks × window per scatter chunk (bounds temporary memory)


@dataclass(frozen=True, eq=False)
class ReflectionBatch:
    """A padded batch of reflection lists (B patterns, N reflections at most).

    hkl : (B, N, 3) float; multiplicity, f2 : (B, N); mask : (B, N) bool (False = padding);
    cell : (B, 6) (a, b, c Å; α, β, γ degrees); laue : (B, R, 3, 3) Laue rotations
    (identity-padded) and laue_mask : (B, R), present when built with ``laue=True``.
    """

    hkl: torch.Tensor
    multiplicity: torch.Tensor
    f2: torch.Tensor
    mask: torch.Tensor
    cell: torch.Tensor
    laue: torch.Tensor | None = None
    laue_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.hkl.shape[0])

    def with_cell(self, cell: torch.Tensor | np.ndarray) -> ReflectionBatch:
        """The same reflections on other (e.g. strained) cells, shape (B, 6); |F|² is kept."""
        cell = torch.as_tensor(cell, dtype=self.cell.dtype, device=self.cell.device)
        if cell.shape != self.cell.shape:
            raise ValueError(f"cell must have shape {tuple(self.cell.shape)}, got {tuple(cell.shape)}")
        return replace(self, cell=cell)


def collate(
    records: Sequence[ReflectionList],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    laue: bool = False,
    cells: np.ndarray | None = None,
) -> ReflectionBatch:
    """Pad reflection lists to one length and move them to ``device``.

    Parameters
    ----------
    records : sequence of ReflectionList
    device, dtype : where and how to hold the tensors.
    laue : bool
        Also gather the Laue rotations (needed for preferred orientation).
    cells : array (B, 6), optional
        Cells to use instead of the records' (e.g. strained).
    """
    if len(records) == 0:
        raise ValueError("collate needs at least one record")
    b = len(records)
    n = max(1, max(len(r) for r in records))
    hkl = np.zeros((b, n, 3), np.float32)
    mult = np.zeros((b, n), np.float32)
    f2 = np.zeros((b, n), np.float64)
    mask = np.zeros((b, n), bool)
    for i, r in enumerate(records):
        k = len(r)
        hkl[i, :k], mult[i, :k], f2[i, :k], mask[i, :k] = r.hkl, r.multiplicity, r.f2, True
    cell = np.stack([r.cell for r in records]) if cells is None else np.asarray(cells, float)
    if cell.shape != (b, 6):
        raise ValueError(f"cells must have shape ({b}, 6), got {cell.shape}")
    rot = rmask = None
    if laue:
        rots = [symmetry.laue_rotations(r.hall) for r in records]
        nr = max(len(x) for x in rots)
        rot_np = np.tile(np.eye(3, dtype=np.float32), (b, nr, 1, 1))
        rmask_np = np.zeros((b, nr), bool)
        for i, x in enumerate(rots):
            rot_np[i, : len(x)], rmask_np[i, : len(x)] = x, True
        rot = torch.as_tensor(rot_np, dtype=dtype, device=device)
        rmask = torch.as_tensor(rmask_np, device=device)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    return ReflectionBatch(t(hkl), t(mult), t(f2), torch.as_tensor(mask, device=device), t(cell), rot, rmask)


@dataclass(frozen=True, eq=False)
class PatternParams:
    """Per-pattern instrument and sample parameters, each a tensor of shape (B,).

    Defaults come from an :class:`~ratagent.instrument.Instrument`
    (:meth:`from_instrument`); augmentation draws them per pattern.
    """

    scale: torch.Tensor  # overall intensity factor
    zero_shift_deg: torch.Tensor  # 2θ zero shift, degrees
    displacement_mm: torch.Tensor  # sample displacement s, mm
    u: torch.Tensor  # Caglioti U, degrees²
    v: torch.Tensor  # Caglioti V, degrees²
    w: torch.Tensor  # Caglioti W, degrees²
    x: torch.Tensor  # Lorentzian X, degrees
    y: torch.Tensor  # Lorentzian Y, degrees
    asymmetry: torch.Tensor  # Bérar–Baldinozzi P (dimensionless)
    po_ratio: torch.Tensor  # March–Dollase r (1 = random powder)
    po_axis: torch.Tensor  # (B, 3) preferred axis as reciprocal-lattice indices

    @classmethod
    def from_instrument(
        cls,
        instrument: Instrument,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> PatternParams:
        """Every pattern with the instrument's own values, scale 1 and no texture."""

        def full(value: float) -> torch.Tensor:
            return torch.full((batch_size,), float(value), dtype=dtype, device=device)

        axis = torch.zeros((batch_size, 3), dtype=dtype, device=device)
        axis[:, 2] = 1.0
        return cls(
            full(1.0),
            full(instrument.zero_shift_deg),
            full(instrument.displacement_mm),
            full(instrument.u_deg2),
            full(instrument.v_deg2),
            full(instrument.w_deg2),
            full(instrument.x_deg),
            full(instrument.y_deg),
            full(instrument.asymmetry),
            full(1.0),
            axis,
        )

    def to(self, device: torch.device | str) -> PatternParams:
        """A copy on another device."""
        return PatternParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _preferred_orientation(batch: ReflectionBatch, params: PatternParams) -> torch.Tensor:
    """⟨P_MD⟩ over the Laue equivalents h R of each reflection, (B, N); 1 where r = 1.

    cos α = (h R) G* p / √((h G* hᵀ)(p G* pᵀ)); h G* hᵀ is the same for every equivalent.
    """
    if batch.laue is None or batch.laue_mask is None:
        raise ValueError("preferred orientation needs collate(..., laue=True)")
    out = torch.ones_like(batch.f2)
    rows = torch.nonzero(params.po_ratio != 1.0).squeeze(1)  # only textured patterns
    hkl, laue, mask = batch.hkl[rows], batch.laue[rows], batch.laue_mask[rows]
    gstar = physics.reciprocal_metric(batch.cell[rows]).to(hkl.dtype)
    p = params.po_axis[rows].to(hkl.dtype)
    gp = torch.einsum("bij,bj->bi", gstar, p)  # (b, 3)
    rgp = torch.einsum("brij,bj->bri", laue, gp)  # (b, R, 3): (h R)·G*p = h·(R G*p)
    num = torch.bmm(hkl, rgp.transpose(1, 2))  # (b, N, R)
    hh = torch.einsum("bni,bij,bnj->bn", hkl, gstar, hkl)
    pp = torch.einsum("bi,bi->b", p, gp)
    cos_a = num / torch.sqrt(torch.clamp(hh * pp[:, None], min=1e-30))[:, :, None]
    md = physics.march_dollase(cos_a.clamp(-1.0, 1.0), params.po_ratio[rows, None, None])
    m = mask[:, None, :].to(md.dtype)
    out[rows] = (md * m).sum(2) / m.sum(2)
    return out


def peak_table(
    batch: ReflectionBatch, instrument: Instrument, params: PatternParams
) -> dict[str, torch.Tensor]:
    """Positions, integrated intensities and widths of every peak (steps 2–3 of the module).

    Returns
    -------
    dict of tensors of shape (B, N, L) (L = number of wavelength lines):
    ``two_theta`` (observed position, degrees), ``two_theta_bragg``, ``intensity``
    (integrated, 0 for padding and unreachable reflections), ``fwhm`` (degrees), ``eta``,
    ``valid`` (bool).
    """
    b = len(batch)
    for f in fields(params):
        if getattr(params, f.name).shape[0] != b:
            raise ValueError(f"params.{f.name} has {getattr(params, f.name).shape[0]} rows, batch has {b}")
    d = physics.d_spacing(batch.hkl, batch.cell)
    po = None
    if bool(torch.any(params.po_ratio != 1.0)):
        po = _preferred_orientation(batch, params)
    names = ("two_theta", "two_theta_bragg", "intensity", "fwhm", "eta", "valid")
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    col = lambda t: t[:, None]  # noqa: E731  (B,) -> (B, 1) against (B, N)
    for lam, ratio in zip(instrument.wavelengths_angstrom, instrument.line_ratios, strict=True):
        tth = physics.bragg_two_theta(d, lam)
        valid = batch.mask & torch.isfinite(tth)
        tth = torch.where(valid, tth, torch.full_like(tth, 90.0))
        pos = physics.peak_shift(
            tth, col(params.zero_shift_deg), col(params.displacement_mm), instrument.goniometer_radius_mm
        )
        inten = (
            ratio
            * col(params.scale)
            * batch.multiplicity
            * batch.f2
            * physics.lorentz_polarisation(tth, instrument.monochromator_2theta_deg)
        )
        if po is not None:
            inten = inten * po
        fwhm, eta = physics.caglioti_tch(
            tth, col(params.u), col(params.v), col(params.w), col(params.x), col(params.y)
        )
        for k, val in (
            ("two_theta", pos),
            ("two_theta_bragg", tth),
            ("fwhm", fwhm),
            ("eta", eta),
            ("intensity", torch.where(valid, inten, torch.zeros_like(inten))),
            ("valid", valid),
        ):
            cols[k].append(val)
    return {k: torch.stack(v, -1) for k, v in cols.items()}


def render_peaks(
    two_theta: torch.Tensor,
    intensity: torch.Tensor,
    fwhm: torch.Tensor,
    eta: torch.Tensor,
    grid_start_deg: float,
    step_deg: float,
    n_points: int,
    *,
    asymmetry: torch.Tensor | None = None,
    window_fwhm: float = 8.0,
) -> torch.Tensor:
    """Sum unit-area pseudo-Voigt peaks onto a uniform 2θ grid, each within its own window.

    Parameters
    ----------
    two_theta, intensity, fwhm, eta : tensors (B, P)
        Centre (degrees), integrated intensity, FWHM Γ (degrees) and Lorentz fraction η.
    grid_start_deg, step_deg, n_points : the grid 2θ_j = start + j · step.
    asymmetry : tensor (B,), optional
        Bérar–Baldinozzi P of each pattern.
    window_fwhm : float
        Half-width of each peak's window in units of its Γ.

    Returns
    -------
    tensor (B, n_points): Σ_k I_k pV(2θ_j − 2θ_k) A / W_k, with W_k the analytic area of
    the pV inside the window (so that Σ_j value_j · step = I_k for a peak inside the grid).

    Notes
    -----
    The Lorentzian part is evaluated over the whole window (no exponential: cheap); the
    Gaussian part and the asymmetry factor only within ±3Γ, beyond which they are below
    3·10⁻¹¹ and 2·10⁻³ of their peak values (the Gaussian area outside ±3Γ is < 10⁻¹⁰).
    """
    if window_fwhm <= 0:
        raise ValueError(f"window_fwhm must be positive, got {window_fwhm}")
    b, p = two_theta.shape
    dev = intensity.device
    buckets = torch.tensor(_WINDOW_BUCKETS, device=dev)
    keep = (intensity != 0) & torch.isfinite(two_theta)
    need = torch.ceil(window_fwhm * fwhm / step_deg).clamp(1, _WINDOW_BUCKETS[-1])
    centre = torch.round((two_theta - grid_start_deg) / step_deg)
    keep &= (centre + need >= 0) & (centre - need <= n_points - 1)
    bidx = torch.arange(b, device=dev)[:, None].expand(b, p)[keep]
    tth, inten, g, e, nd, c0 = (t[keep] for t in (two_theta, intensity, fwhm, eta, need, centre))
    kw = buckets[torch.bucketize(nd, buckets)]  # wide (Lorentzian) half-window, points
    nd_n = torch.ceil(min(window_fwhm, _CORE_FWHM) * g / step_deg).clamp(1, _WINDOW_BUCKETS[-1])
    kn = torch.minimum(buckets[torch.bucketize(nd_n, buckets)], kw)  # narrow (Gaussian) half-window
    # The output carries a margin of two widest windows on both sides (a kept centre lies
    # at most one window off the grid), so window points off the grid land in the margin,
    # which is cut off at the end, and need no masking.
    margin = 2 * (int(kw.max()) if kw.numel() else 1)
    width = n_points + 2 * margin
    out = torch.zeros(b * width, dtype=intensity.dtype, device=dev)
    offset = c0 * step_deg + grid_start_deg - tth  # Δ at the window centre
    inv_g = 1.0 / g
    half_w, half_n = (kw + 0.5) * step_deg, (kn + 0.5) * step_deg
    area_l = (
        torch.atan(2.0 * (offset + half_w) * inv_g) - torch.atan(2.0 * (offset - half_w) * inv_g)
    ) / math.pi
    area_g = 0.5 * (
        torch.erf(_ERF_K * (offset + half_n) * inv_g) - torch.erf(_ERF_K * (offset - half_n) * inv_g)
    )
    scale = inten * inv_g / (e * area_l + (1.0 - e) * area_g)
    a_l = e * scale * (2.0 / math.pi)  # val_L = a_l / (1 + 4z²), z = Δ/Γ
    a_g = (1.0 - e) * scale * _GAUSS_NORM  # val_G = a_g exp(−4 ln2 z²)
    if asymmetry is not None:
        p_t = 2.0 * asymmetry[bidx] / torch.tan(torch.deg2rad(tth) / 2.0)
    base = bidx * width + c0.long() + margin

    def scatter(k: int, i: torch.Tensor, values) -> None:
        offs = torch.arange(-k, k + 1, device=dev)
        offs_deg = offs.to(tth.dtype) * step_deg
        chunk = max(1, _MAX_ELEMENTS // (2 * k + 1))
        for start in range(0, i.numel(), chunk):
            j = i[start : start + chunk]
            z = (offset[j, None] + offs_deg).mul_(inv_g[j, None])  # (M, 2k+1)
            out.index_add_(0, (base[j, None] + offs).reshape(-1), values(j, z).reshape(-1))

    def lorentz(j: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.div(a_l[j, None], z.mul_(z).mul_(4.0).add_(1.0), out=z)

    def core(j: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        z2 = z * z
        val = torch.exp(z2 * -_GAUSS_K).mul_(a_g[j, None])
        if asymmetry is not None:
            factor = torch.clamp(1.0 - p_t[j, None] * z * torch.exp(-z2), min=0.0)
            lor = a_l[j, None] / (1.0 + 4.0 * z2)
            val = val * factor + lor * (factor - 1.0)  # A·(G + L) inside the core, L outside
        return val

    for k in _WINDOW_BUCKETS:
        i = torch.nonzero((kw == k) & (a_l > 0)).squeeze(1)
        if i.numel():
            scatter(k, i, lorentz)
        i = torch.nonzero((kn == k) & ((a_g > 0) | (asymmetry is not None))).squeeze(1)
        if i.numel():
            scatter(k, i, core)
    return out.view(b, width)[:, margin : margin + n_points]


def render(
    batch: ReflectionBatch,
    instrument: Instrument,
    params: PatternParams | None = None,
    *,
    window_fwhm: float = 8.0,
) -> torch.Tensor:
    """Noise-free Bragg intensity of each pattern on the instrument's 2θ grid, (B, G).

    No background, no noise: see :func:`~ratagent.simulation.augment.simulate_batch`.
    """
    if params is None:
        params = PatternParams.from_instrument(
            instrument, len(batch), device=batch.hkl.device, dtype=batch.hkl.dtype
        )
    table = peak_table(batch, instrument, params)
    b = len(batch)
    n_points = len(instrument.two_theta)
    asym = params.asymmetry if bool(torch.any(params.asymmetry != 0)) else None
    return render_peaks(
        table["two_theta"].reshape(b, -1),
        table["intensity"].reshape(b, -1),
        table["fwhm"].reshape(b, -1),
        table["eta"].reshape(b, -1),
        instrument.two_theta_min_deg,
        instrument.step_deg,
        n_points,
        asymmetry=asym,
        window_fwhm=window_fwhm,
    )
