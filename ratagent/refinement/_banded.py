"""Normal-equation blocks of a design whose columns are contiguous bands, compiled with numba.

Each column c of the Pawley design (a peak group) is non-zero on one run of grid rows,
``lo[c] … lo[c] + length[c] − 1``, stored packed from ``offsets[c]``. The Gram matrix
AᵀW²A needs only the pairs of columns whose bands overlap: with the columns visited in
order of ``lo``, the inner loop stops at the first band that starts past the end of the
current one. The cross terms AᵀW²B (B the dense background basis) and AᵀW²y run over
each band once.

``design_bands`` computes the bands themselves, peak by peak with the formulas of
:func:`ratagent.refinement.profile.design_columns`. Both are None where numba is not
installed (:mod:`ratagent.refinement.profile` then does the same with numpy).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["design_bands", "normal_blocks"]

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
