"""Normal-equation blocks of a design whose columns are contiguous bands, compiled with numba.

Each column c of the Pawley design (a peak group) is non-zero on one run of grid rows,
``lo[c] … lo[c] + length[c] − 1``, stored packed from ``offsets[c]``. The Gram matrix
AᵀW²A needs only the pairs of columns whose bands overlap: with the columns visited in
order of ``lo``, the inner loop stops at the first band that starts past the end of the
current one. The cross terms AᵀW²B (B the dense background basis) and AᵀW²y run over
each band once.

``design_bands`` computes the bands themselves, peak by peak with the formulas of
:func:`ratagent.refinement.profile.design_columns`, and ``design_derivatives`` the
derivatives of their weighted sum with respect to the fit's parameters (the Jacobian of
the Pawley fit). All are None where numba is not installed (:mod:`ratagent.refinement.profile`
then does the first two with numpy; the fit differentiates numerically).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["design_bands", "design_derivatives", "normal_blocks"]

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the numpy path stays correct
    numba = None


def _normal_blocks(lo, length, offsets, data, w2, basis, y, order):  # pragma: no cover - compiled
    k = lo.shape[0]
    n_b = basis.shape[1]
    gram = np.zeros((k, k))
    cross = np.zeros((k, n_b))
    rhs = np.zeros(k)
    for ia in range(k):
        a = order[ia]
        la = length[a]
        if la == 0:
            continue
        sa = lo[a]
        ea = sa + la
        oa = offsets[a] - sa
        for j in range(sa, ea):
            v = data[oa + j] * w2[j]
            rhs[a] += v * y[j]
            for i in range(n_b):
                cross[a, i] += v * basis[j, i]
        for ib in range(ia, k):
            b = order[ib]
            sb = lo[b]
            if sb >= ea:
                break
            lb = length[b]
            if lb == 0:
                continue
            ob = offsets[b] - sb
            acc = 0.0
            for j in range(max(sa, sb), min(ea, sb + lb)):
                acc += data[oa + j] * data[ob + j] * w2[j]
            gram[a, b] = acc
            gram[b, a] = acc
    return gram, cross, rhs


normal_blocks = None if numba is None else numba.njit(cache=True, nogil=True)(_normal_blocks)


def _design_bands(x, step, c0, size, centre, fwhm, eta, amplitude, column, n_columns, asymmetry,
                  gauss_norm, gauss_k, erf_k):  # pragma: no cover - compiled
    """The banded columns of the Pawley design: (lo, length, data); formulas of
    :func:`ratagent.refinement.profile.design_columns`, evaluated peak by peak."""
    n = x.shape[0]
    m = c0.shape[0]
    lo = np.full(n_columns, n, np.int64)
    hi = np.full(n_columns, -1, np.int64)
    for p in range(m):
        c = column[p]
        lo[c] = min(lo[c], max(c0[p] - size[p], 0))
        hi[c] = max(hi[c], min(c0[p] + size[p], n - 1))
    length = np.maximum(hi - lo + 1, 0)
    for c in range(n_columns):
        if length[c] == 0:
            lo[c] = 0
    offsets = np.zeros(n_columns + 1, np.int64)
    for c in range(n_columns):
        offsets[c + 1] = offsets[c] + length[c]
    data = np.zeros(offsets[n_columns])
    for p in range(m):
        k = size[p]
        g = fwhm[p]
        e = eta[p]
        cp = c0[p]
        mid = (x[cp] if 0 <= cp < n else x[0] + cp * step) - centre[p]
        a_lo = mid - (k + 0.5) * step
        a_hi = mid + (k + 0.5) * step
        area = e * (math.atan(2.0 * a_hi / g) - math.atan(2.0 * a_lo / g)) / math.pi + (1.0 - e) * 0.5 * (
            math.erf(erf_k * a_hi / g) - math.erf(erf_k * a_lo / g))
        scale = amplitude[p] / (g * area)
        tan_t = math.tan(math.radians(centre[p]) / 2.0)
        base = offsets[column[p]] - lo[column[p]]
        for j in range(max(cp - k, 0), min(cp + k, n - 1) + 1):
            z = (x[j] - centre[p]) / g
            z2 = z * z
            val = scale * (e * (2.0 / math.pi) / (1.0 + 4.0 * z2)
                           + (1.0 - e) * gauss_norm * math.exp(-gauss_k * z2))
            if asymmetry != 0.0:
                val *= max(1.0 - asymmetry * 2.0 * z * math.exp(-z2) / tan_t, 0.0)
            data[base + j] += val
    return lo, length, data


design_bands = None if numba is None else numba.njit(cache=True, nogil=True)(_design_bands)


def _design_derivatives(x, step, c0, size, centre, fwhm, eta, amplitude, intensity, column, n_columns, probe,
                        asymmetry, dcentre, dfwhm, deta, k_asym, gauss_norm, gauss_k,
                        erf_k):  # pragma: no cover - compiled
    """Derivatives of the design A(θ) of :func:`_design_bands` (peaks v_p = amplitude_p × profile):

    D[j, k] = Σ_p intensity_p ∂v_p(x_j)/∂θ_k, i.e. ∂(A I)/∂θ_k, and
    G[c, k] = Σ_j probe_j ∂A[j, c]/∂θ_k, i.e. (∂A/∂θ_k)ᵀ probe.

    Each peak's value depends on θ through its centre, Γ and η (the chain factors
    ``dcentre``, ``dfwhm``, ``deta``, (m, K)), its window area included, and on the
    asymmetry P, which is θ[``k_asym``] (−1: not a parameter). The window (c0, size) is
    held: it moves by whole grid steps only.
    """
    n = x.shape[0]
    m = c0.shape[0]
    n_k = dcentre.shape[1]
    out = np.zeros((n, n_k))
    grad = np.zeros((n_columns, n_k))
    dv = np.zeros(n_k)
    for p in range(m):
        amp = amplitude[p]
        if amp == 0.0:
            continue
        col = column[p]
        ip = intensity[p]
        k = size[p]
        g = fwhm[p]
        e = eta[p]
        c = centre[p]
        cp = c0[p]
        mid = (x[cp] if 0 <= cp < n else x[0] + cp * step) - c
        a_lo = mid - (k + 0.5) * step
        a_hi = mid + (k + 0.5) * step
        u_lo, u_hi = 2.0 * a_lo / g, 2.0 * a_hi / g
        v_lo, v_hi = erf_k * a_lo / g, erf_k * a_hi / g
        lor = (math.atan(u_hi) - math.atan(u_lo)) / math.pi
        gau = 0.5 * (math.erf(v_hi) - math.erf(v_lo))
        area = e * lor + (1.0 - e) * gau
        dat_lo, dat_hi = 1.0 / (1.0 + u_lo * u_lo), 1.0 / (1.0 + u_hi * u_hi)
        der_lo = 2.0 / math.sqrt(math.pi) * math.exp(-v_lo * v_lo)
        der_hi = 2.0 / math.sqrt(math.pi) * math.exp(-v_hi * v_hi)
        # both window ends move with −c; Γ scales them
        darea_dc = -(e * (2.0 / g) * (dat_hi - dat_lo) / math.pi
                     + (1.0 - e) * 0.5 * (erf_k / g) * (der_hi - der_lo))
        darea_dg = (-e * (u_hi * dat_hi - u_lo * dat_lo) / (math.pi * g)
                    - (1.0 - e) * 0.5 * (v_hi * der_hi - v_lo * der_lo) / g)
        darea_de = lor - gau
        scale = amp / (g * area)
        dls_dc = -darea_dc / area  # ∂ ln scale
        dls_dg = -1.0 / g - darea_dg / area
        dls_de = -darea_de / area
        tan_t = math.tan(math.radians(c) / 2.0)
        dtan_dc = math.pi / 360.0 * (1.0 + tan_t * tan_t)
        for j in range(max(cp - k, 0), min(cp + k, n - 1) + 1):
            z = (x[j] - c) / g
            z2 = z * z
            q = 1.0 + 4.0 * z2
            lz = (2.0 / math.pi) / q
            gz = gauss_norm * math.exp(-gauss_k * z2)
            shape = e * lz + (1.0 - e) * gz
            dshape_dz = e * (2.0 / math.pi) * (-8.0 * z) / (q * q) - (1.0 - e) * gz * 2.0 * gauss_k * z
            f, df_dc, df_dg, df_dp = 1.0, 0.0, 0.0, 0.0
            if asymmetry != 0.0 or k_asym >= 0:
                ez = math.exp(-z2)
                h = 2.0 * z * ez
                dh_dz = 2.0 * ez * (1.0 - 2.0 * z2)
                fr = 1.0 - asymmetry * h / tan_t
                if fr > 0.0:
                    f = fr
                    df_dc = -asymmetry * (dh_dz * (-1.0 / g) * tan_t - h * dtan_dc) / (tan_t * tan_t)
                    df_dg = -asymmetry * dh_dz * (-z / g) / tan_t
                    df_dp = -h / tan_t
                else:
                    f = 0.0
            v0 = scale * shape
            dv_dc = (v0 * dls_dc + scale * dshape_dz * (-1.0 / g)) * f + v0 * df_dc
            dv_dg = (v0 * dls_dg + scale * dshape_dz * (-z / g)) * f + v0 * df_dg
            dv_de = (v0 * dls_de + scale * (lz - gz)) * f
            for kk in range(n_k):
                dv[kk] = dv_dc * dcentre[p, kk] + dv_dg * dfwhm[p, kk] + dv_de * deta[p, kk]
            if k_asym >= 0:
                dv[k_asym] += v0 * df_dp
            pj = probe[j]
            for kk in range(n_k):
                out[j, kk] += ip * dv[kk]
                grad[col, kk] += pj * dv[kk]
    return out, grad


design_derivatives = None if numba is None else numba.njit(cache=True, nogil=True)(_design_derivatives)
