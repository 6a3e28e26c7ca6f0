"""Batched rendering of reflection lists into powder patterns (torch, CPU or GPU).

Algorithm (:func:`render`)
--------------------------
1. Pad the batch's reflection lists to a common length N with a mask (:func:`collate`).
2. For each wavelength line ℓ: d from hkl and the (possibly strained) cell through
   the metric tensor, Bragg 2θ, shifted by zero and displacement (:func:`peak_table`;
   :func:`render` computes steps 2–3 for the real reflections only, not the padding).
   Where a pattern's ``kbeta`` is given, the anode's Kβ1 line
   (:attr:`~ratagent.instrument.Instrument.kbeta_angstrom`) is one more line, its ratio
   r_β that pattern's ``kbeta`` (0 leaves it out).
3. Integrated intensity of each peak
   I = scale · r_ℓ · m · |F|² · LP(2θ) · P_MD, with P_MD the March–Dollase factor
   averaged over the reflection's Laue equivalents.
4. Windowed profiles (:func:`render_peaks`): each peak only touches the grid points
   within ± ``window_fwhm`` · Γ of its centre. Peaks are bucketed by window size; in
   each bucket, chunk by chunk, one tensor (window × peaks) of TCH pseudo-Voigt values
   (times the asymmetry factor) is scatter-added into the (B, G) output. Without
   asymmetry the Lorentzian and Gaussian values come from one matrix product each of
   the offsets [1, o, o²] with per-peak coefficients (``_render_packed``). The truncated profile
   is divided by its analytic area inside the window, so the area of every peak on
   the grid is its integrated intensity I (units: intensity · degree⁻¹).

The device and dtype follow the batch's tensors (float32 by default).
"""

from __future__ import annotations

import functools
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
_CHUNK_ELEMENTS = 1 << 18  # window points per scatter chunk: temporaries stay in the CPU caches
_CHUNK_ELEMENTS_GPU = 1 << 24  # on a GPU: fewer, larger launches (a chunk of 2²⁴ floats is 64 MiB)
_NEGLIGIBLE = 1e-12  # peaks weaker than this share of their pattern's strongest are not drawn


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
    # Kβ1 / Kα1 intensity ratio (what a β filter leaves); None: no Kβ line at all
    kbeta: torch.Tensor | None = None

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

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name (an absent ``kbeta`` is left out)."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def to(self, device: torch.device | str) -> PatternParams:
        """A copy on another device."""
        return PatternParams(**{k: v.to(device) for k, v in self.tensors().items()})


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


def _line_columns(
    d: torch.Tensor,
    multiplicity: torch.Tensor,
    f2: torch.Tensor,
    valid: torch.Tensor,
    po: torch.Tensor | None,
    par: dict[str, torch.Tensor],
    instrument: Instrument,
) -> dict[str, torch.Tensor]:
    """Steps 2–3 of the module docstring for reflections of any shape S; each column is (*S, L).

    ``par`` holds the scalar fields of :class:`PatternParams` broadcastable against ``d``:
    columns (B, 1) against a padded (B, N) table, or gathered per reflection for a packed one;
    with ``kbeta`` among them, the anode's Kβ1 line is the last of the lines, with that ratio.
    All L wavelength lines are computed at once along a last axis.
    """
    ratio = torch.tensor(instrument.line_ratios, dtype=d.dtype, device=d.device)
    par = {k: v[..., None] for k, v in par.items()}
    lams = instrument.wavelengths_angstrom
    if "kbeta" in par:
        kbeta = par.pop("kbeta")
        ratio = torch.cat([ratio.expand(*kbeta.shape[:-1], -1), kbeta], -1)
        lams = (*lams, _kbeta_angstrom(instrument))
    tth = torch.stack([physics.bragg_two_theta(d, lam) for lam in lams], -1)
    ok = valid[..., None] & torch.isfinite(tth)
    tth = torch.where(ok, tth, torch.full_like(tth, 90.0))
    pos = physics.peak_shift(
        tth, par["zero_shift_deg"], par["displacement_mm"], instrument.goniometer_radius_mm
    )
    inten = (
        ratio
        * par["scale"]
        * multiplicity[..., None]
        * f2[..., None]
        * physics.lorentz_polarisation(tth, instrument.monochromator_2theta_deg)
    )
    if po is not None:
        inten = inten * po[..., None]
    fwhm, eta = physics.caglioti_tch(tth, par["u"], par["v"], par["w"], par["x"], par["y"])
    return {
        "two_theta": pos,
        "two_theta_bragg": tth,
        "intensity": torch.where(ok, inten, torch.zeros_like(inten)),
        "fwhm": fwhm,
        "eta": eta,
        "valid": ok,
    }


_SCALAR_PARAMS = ("scale", "zero_shift_deg", "displacement_mm", "u", "v", "w", "x", "y")


def _kbeta_angstrom(instrument: Instrument) -> float:
    lam = instrument.kbeta_angstrom
    if lam is None:
        raise ValueError(f"params.kbeta needs an anode's Kβ1 line; the instrument's radiation is "
                         f"{instrument.radiation}")
    return lam


def _scalars(params: PatternParams) -> tuple[str, ...]:
    """The scalar fields that :func:`_line_columns` reads: ``kbeta`` only where a pattern has Kβ."""
    with_kbeta = params.kbeta is not None and bool(torch.any(params.kbeta != 0))
    return (*_SCALAR_PARAMS, "kbeta") if with_kbeta else _SCALAR_PARAMS


def _check_params(batch: ReflectionBatch, params: PatternParams) -> None:
    b = len(batch)
    for name, value in params.tensors().items():
        if value.shape[0] != b:
            raise ValueError(f"params.{name} has {value.shape[0]} rows, batch has {b}")
    if params.kbeta is not None and not bool(torch.all((params.kbeta >= 0) & (params.kbeta < 1))):
        raise ValueError(f"params.kbeta must be a Kβ1/Kα1 ratio in [0, 1), got {params.kbeta.tolist()}")


def peak_table(
    batch: ReflectionBatch, instrument: Instrument, params: PatternParams
) -> dict[str, torch.Tensor]:
    """Positions, integrated intensities and widths of every peak (steps 2–3 of the module).

    Returns
    -------
    dict of tensors of shape (B, N, L) (L = number of wavelength lines, the Kβ1 line last
    where ``params.kbeta`` has a non-zero ratio):
    ``two_theta`` (observed position, degrees), ``two_theta_bragg``, ``intensity``
    (integrated, 0 for padding and unreachable reflections), ``fwhm`` (degrees), ``eta``,
    ``valid`` (bool).
    """
    _check_params(batch, params)
    d = physics.d_spacing(batch.hkl, batch.cell)
    po = _preferred_orientation(batch, params) if bool(torch.any(params.po_ratio != 1.0)) else None
    par = {k: getattr(params, k)[:, None] for k in _scalars(params)}  # (B,) -> (B, 1) against (B, N)
    return _line_columns(d, batch.multiplicity, batch.f2, batch.mask, po, par, instrument)


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
    b = two_theta.shape[0]
    rows = torch.arange(b, device=two_theta.device)[:, None].expand_as(two_theta)
    return _render_packed(
        rows.reshape(-1),
        two_theta.reshape(-1),
        intensity.reshape(-1),
        fwhm.reshape(-1),
        eta.reshape(-1),
        b,
        grid_start_deg,
        step_deg,
        n_points,
        None if asymmetry is None else asymmetry[:, None].expand_as(two_theta).reshape(-1),
        window_fwhm,
    )


@functools.lru_cache(maxsize=256)
def _window_offsets(
    k: int, step_deg: float, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid offsets o = −k … k of a window: as indices (W, 1), in degrees (W, 1), and [1, o, o²] (W, 3)."""
    o = torch.arange(-k, k + 1, device=device)
    of = o.to(dtype)
    return (
        o[:, None],
        (of * step_deg)[:, None],
        torch.stack([torch.ones_like(of), of, of * of], 1),
    )


def _render_packed(
    rows: torch.Tensor,
    two_theta: torch.Tensor,
    intensity: torch.Tensor,
    fwhm: torch.Tensor,
    eta: torch.Tensor,
    b: int,
    grid_start_deg: float,
    step_deg: float,
    n_points: int,
    asymmetry: torch.Tensor | None,
    window_fwhm: float,
) -> torch.Tensor:
    """:func:`render_peaks` on peaks given as 1-D tensors, ``rows`` (the pattern of each) non-decreasing.

    Window values are evaluated as polynomials in the grid offset o through one small matrix
    product per chunk: with u = 2(Δ₀ + o·step)/Γ (Δ₀ the offset at the window centre),
    a_L / (1 + u²) = 1 / ([1, o, o²] · c_L) and a_G exp(−ln2 u²) = exp([1, o, o²] · c_G), the
    coefficients c_L, c_G per peak. Chunks are laid out (window point, peak), so that narrow
    windows still give long contiguous rows.
    """
    dev, dtype = intensity.device, intensity.dtype
    buckets = torch.tensor(_WINDOW_BUCKETS, device=dev)
    need = torch.ceil(window_fwhm * fwhm / step_deg).clamp(1, _WINDOW_BUCKETS[-1])
    centre = torch.round((two_theta - grid_start_deg) / step_deg)
    keep = (intensity != 0) & torch.isfinite(two_theta)
    keep &= (centre + need >= 0) & (centre - need <= n_points - 1)
    # A peak 10⁻¹² of its pattern's strongest adds nothing a float32 sum can hold, and its
    # window coefficients (∝ 1/intensity) would overflow to ±inf and turn the row into NaN.
    strongest = torch.zeros(b, dtype=dtype, device=dev).scatter_reduce_(
        0, rows, torch.where(keep, intensity.abs(), torch.zeros_like(intensity)), "amax")
    keep &= intensity.abs() > _NEGLIGIBLE * strongest[rows]
    rows, tth, inten, g, e, need, centre = (
        t[keep] for t in (rows, two_theta, intensity, fwhm, eta, need, centre)
    )
    iw = torch.bucketize(need, buckets)  # wide (Lorentzian) half-window: bucket index
    nd_n = torch.ceil(min(window_fwhm, _CORE_FWHM) * g / step_deg).clamp(1, _WINDOW_BUCKETS[-1])
    i_n = torch.minimum(torch.bucketize(nd_n, buckets), iw)  # narrow (Gaussian) half-window
    kw, kn = buckets[iw], buckets[i_n]
    # The output carries a margin of two widest windows on both sides (a kept centre lies
    # at most one window off the grid), so window points off the grid land in the margin,
    # which is cut off at the end, and need no masking.
    margin = 2 * (int(kw.max()) if kw.numel() else 1)
    width = n_points + 2 * margin
    if rows.numel() == 0:
        return torch.zeros((b, width), dtype=dtype, device=dev)[:, margin : margin + n_points]
    out = torch.zeros(b * width, dtype=dtype, device=dev)
    offset = centre * step_deg + grid_start_deg - tth  # Δ₀, at the window centre
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
    lorentz = a_l > 0
    # 1 + u² = 1 + (A + B o)², A = 2Δ₀/Γ, B = 2 step/Γ; divided by a_l
    c_a, c_b = 2.0 * offset * inv_g, (2.0 * step_deg) * inv_g
    coef_l = torch.stack([(1.0 + c_a * c_a) / a_l, 2.0 * c_a * c_b / a_l, c_b * c_b / a_l])
    if asymmetry is None:
        core = a_g > 0
        c_a, c_b = c_a * 0.5, c_b * 0.5  # z = A + B o
        coef_g = torch.stack(
            [torch.log(a_g) - _GAUSS_K * c_a * c_a, -2.0 * _GAUSS_K * c_a * c_b, -_GAUSS_K * c_b * c_b]
        )
        p_t = None
    else:
        core = torch.ones_like(lorentz)
        coef_g = None
        p_t = 2.0 * asymmetry[keep] / torch.tan(torch.deg2rad(tth) / 2.0)
    base = rows * width + centre.long() + margin
    chunk_elements = _CHUNK_ELEMENTS if dev.type == "cpu" else _CHUNK_ELEMENTS_GPU

    def values_l(j: torch.Tensor, k: int) -> torch.Tensor:
        poly = _window_offsets(k, step_deg, dtype, dev)[2]
        return torch.mm(poly, coef_l[:, j]).reciprocal_()

    def values_core(j: torch.Tensor, k: int) -> torch.Tensor:
        _, offs_deg, poly = _window_offsets(k, step_deg, dtype, dev)
        if p_t is None:
            return torch.mm(poly, coef_g[:, j]).exp_()
        z = (offset[j] + offs_deg).mul_(inv_g[j])  # (W, M)
        z2 = z * z
        val = torch.exp(z2 * -_GAUSS_K).mul_(a_g[j])
        factor = torch.clamp(1.0 - p_t[j] * z * torch.exp(-z2), min=0.0)
        lor = a_l[j] / (1.0 + 4.0 * z2)
        return val * factor + lor * (factor - 1.0)  # A·(G + L) inside the core, L outside

    def accumulate(select: torch.Tensor, bucket: torch.Tensor, values) -> None:
        """Scatter-add the windows of the selected peaks, bucket by bucket, chunk by chunk."""
        peaks = torch.nonzero(select).squeeze(1)
        which = bucket[peaks]
        peaks = peaks[torch.argsort(which, stable=True)]
        start = 0
        for i, count in enumerate(torch.bincount(which, minlength=len(_WINDOW_BUCKETS)).tolist()):
            if not count:
                continue
            k = _WINDOW_BUCKETS[i]
            offs = _window_offsets(k, step_deg, dtype, dev)[0]
            chunk = max(1, chunk_elements // (2 * k + 1))
            for s in range(start, start + count, chunk):
                j = peaks[s : min(s + chunk, start + count)]
                # scatter_add_ rather than index_add_: the same sums, about a tenth faster on the CPU
                out.scatter_add_(0, (base[j] + offs).view(-1), values(j, k).view(-1))
            start += count

    accumulate(lorentz, iw, values_l)
    accumulate(core, i_n, values_core)
    return out.view(b, width)[:, margin : margin + n_points]


def render(
    batch: ReflectionBatch,
    instrument: Instrument,
    params: PatternParams | None = None,
    *,
    window_fwhm: float = 8.0,
) -> torch.Tensor:
    """Noise-free Bragg intensity of each pattern on the instrument's 2θ grid, (B, G).

    The same as :func:`render_peaks` on the columns of :func:`peak_table`, but the peak
    table is only computed for the batch's real reflections (no padding). No background,
    no noise: see :func:`~ratagent.simulation.augment.simulate_batch`. On the CPU it runs
    on one intra-op thread whatever ``torch.get_num_threads()`` says, and leaves that as
    it was.
    """
    if params is None:
        params = PatternParams.from_instrument(
            instrument, len(batch), device=batch.hkl.device, dtype=batch.hkl.dtype
        )
    _check_params(batch, params)
    if window_fwhm <= 0:
        raise ValueError(f"window_fwhm must be positive, got {window_fwhm}")
    n_threads = torch.get_num_threads()
    if batch.hkl.device.type != "cpu" or n_threads == 1:
        return _render_rows(batch, instrument, params, window_fwhm)
    # on the CPU one intra-op thread: the scatter-adds, most of the work, run on one
    # anyway, and splitting the many small element-wise steps across threads cost more
    # than it saved (benchmarks/simulate.py: 2 threads at 0.7 times the rate of one)
    torch.set_num_threads(1)
    try:
        return _render_rows(batch, instrument, params, window_fwhm)
    finally:
        torch.set_num_threads(n_threads)


def _render_rows(
    batch: ReflectionBatch, instrument: Instrument, params: PatternParams, window_fwhm: float
) -> torch.Tensor:
    """:func:`render` in this process, arguments checked."""
    mask = batch.mask
    rows = torch.nonzero(mask)[:, 0]
    d = physics.d_spacing(batch.hkl, batch.cell)[mask]
    po = None
    if bool(torch.any(params.po_ratio != 1.0)):
        po = _preferred_orientation(batch, params)[mask]
    par = {k: getattr(params, k)[rows] for k in _scalars(params)}
    valid = torch.ones_like(mask[mask])
    cols = _line_columns(d, batch.multiplicity[mask], batch.f2[mask], valid, po, par, instrument)
    n_lines = cols["two_theta"].shape[-1]
    flat = {k: v.reshape(-1) for k, v in cols.items()}  # (reflection, line) order
    rows = rows.repeat_interleave(n_lines)
    asym = params.asymmetry[rows] if bool(torch.any(params.asymmetry != 0)) else None
    return _render_packed(
        rows,
        flat["two_theta"],
        flat["intensity"],
        flat["fwhm"],
        flat["eta"],
        len(batch),
        instrument.two_theta_min_deg,
        instrument.step_deg,
        len(instrument.two_theta),
        asym,
        window_fwhm,
    )
