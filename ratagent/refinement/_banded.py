"""Normal-equation blocks of a design whose columns are contiguous bands, compiled with numba.

Each column c of the Pawley design (a peak group) is non-zero on one run of grid rows,
``lo[c] … lo[c] + length[c] − 1``, stored packed from ``offsets[c]``. The Gram matrix
AᵀW²A needs only the pairs of columns whose bands overlap: with the columns visited in
order of ``lo``, the inner loop stops at the first band that starts past the end of the
current one. The cross terms AᵀW²B (B the dense background basis) and AᵀW²y run over
each band once. The sums over rows may be reordered, so that the compiler vectorises them.

``design_bands`` computes the bands themselves, peak by peak with the formulas of
:func:`ratagent.refinement.profile.design_columns`, and ``design_derivatives`` the
derivatives of their weighted sum with respect to the fit's parameters (the Jacobian of
the Pawley fit). Their loops over a peak's window have no calls and no branches, so the
compiler vectorises them: the exponentials are :func:`_exp` (a polynomial, within 1 ulp of
libm's), float division follows numpy (no ZeroDivisionError check), and multiply-adds may
fuse. All are None where numba is not installed (:mod:`ratagent.refinement.profile`
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

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (fdlibm): k · _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(13))


def _exp_of(as_double):
    """exp(x) for x ≤ 0, in operations a compiler can vectorise: x = k ln 2 + r with
    |r| ≤ ln 2 / 2, the Taylor polynomial of degree 12 in r (Estrin's scheme: a short
    dependency chain), times 2ᵏ built from its exponent bits by ``as_double`` (the int64 →
    float64 bit cast). Arguments below −700 count as −700 (e⁻⁷⁰⁰ ≈ 1e−304, nothing a
    profile needs)."""
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 = _TAYLOR

    def exp(x):  # pragma: no cover - compiled
        x = x if x > -700.0 else -700.0
        k = np.rint(x * _LOG2E)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        r2 = r * r
        r4 = r2 * r2
        s0 = (c0 + c1 * r) + (c2 + c3 * r) * r2
        s1 = (c4 + c5 * r) + (c6 + c7 * r) * r2
        s2 = (c8 + c9 * r) + (c10 + c11 * r) * r2
        return ((s0 + s1 * r4) + (s2 + c12 * r4) * (r4 * r4)) * as_double((np.int64(k) + 1023) << 52)

    return exp


if numba is not None:
    from llvmlite import ir
    from numba.extending import intrinsic

    @intrinsic
    def _as_double(typingctx, bits):  # pragma: no cover - compiled
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return numba.types.float64(numba.types.int64), codegen

    _exp = numba.njit(inline="always")(_exp_of(_as_double))
    #: the vectorisable kernels: numpy's float division and fused multiply-adds
    _vector_jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


def _normal_blocks(lo, length, offsets, data, w2, basis, y, order, out):  # pragma: no cover - compiled
    """AᵀW²A into ``out[n_b:, n_b:]`` and AᵀW²B into ``out[n_b:, :n_b]`` and its transpose
    (``out`` holds zeros there; n_b columns of B); returns AᵀW²y."""
    k = lo.shape[0]
    n_b = basis.shape[1]
    rhs = np.zeros(k)
    for ia in range(k):
        a = order[ia]
        la = length[a]
        if la == 0:
            continue
        sa = lo[a]
        ea = sa + la
        da = data[offsets[a]:offsets[a] + la]  # views indexed from 0, as in the kernels below
        wa = w2[sa:ea]
        ya = y[sa:ea]
        acc = 0.0
        for t in range(la):
            v = da[t] * wa[t]
            acc += v * ya[t]
            for i in range(n_b):
                out[n_b + a, i] += v * basis[sa + t, i]
        rhs[a] = acc
        for i in range(n_b):
            out[i, n_b + a] = out[n_b + a, i]
        for ib in range(ia, k):
            b = order[ib]
            sb = lo[b]
            if sb >= ea:
                break
            lb = length[b]
            if lb == 0:
                continue
            j0 = max(sa, sb)
            j1 = min(ea, sb + lb)
            if j1 <= j0:
                continue
            pa = da[j0 - sa:j1 - sa]
            pb = data[offsets[b] + j0 - sb:offsets[b] + j1 - sb]
            pw = w2[j0:j1]
            acc = 0.0  # a sum the compiler may reorder, to vectorise it
            for t in range(j1 - j0):
                acc += pa[t] * pb[t] * pw[t]
            out[n_b + a, n_b + b] = acc
            out[n_b + b, n_b + a] = acc
    return rhs


normal_blocks = None if numba is None else numba.njit(
    cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})(_normal_blocks)


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
        j0, j1 = max(cp - k, 0), min(cp + k, n - 1) + 1
        if j1 <= j0:
            continue
        xs = x[j0:j1]  # views indexed from 0: the loop needs no negative-index check
        ds = data[base + j0:base + j1]
        c = centre[p]
        for t in range(j1 - j0):
            z = (xs[t] - c) / g
            z2 = z * z
            val = scale * (e * (2.0 / math.pi) / (1.0 + 4.0 * z2)
                           + (1.0 - e) * gauss_norm * _exp(-gauss_k * z2))
            f = 1.0 - asymmetry * 2.0 * z * _exp(-z2) / tan_t  # 1 where there is no asymmetry
            ds[t] += val * (f if f > 0.0 else 0.0)
    return lo, length, data


design_bands = None if numba is None else _vector_jit(_design_bands)


def _design_derivatives(x, step, c0, size, centre, fwhm, eta, amplitude, intensity, column, n_columns, probe,
                        asymmetry, dcentre, dfwhm, deta, k_asym, gauss_norm, gauss_k,
                        erf_k):  # pragma: no cover - compiled
    """Derivatives of the design A(θ) of :func:`_design_bands` (peaks v_p = amplitude_p × profile):

    D[j, k] = Σ_p intensity_p ∂v_p(x_j)/∂θ_k, i.e. ∂(A I)/∂θ_k, and
    G[c, k] = Σ_j probe_j ∂A[j, c]/∂θ_k, i.e. (∂A/∂θ_k)ᵀ probe.

    Each peak's value depends on θ through its centre, Γ and η (the chain factors
    ``dcentre``, ``dfwhm``, ``deta``, (m, K)), its window area included, and on the
    asymmetry P, which is θ[``k_asym``] (−1: not a parameter). The window (c0, size) is
    held: it moves by whole grid steps only. Peak by peak, its value's derivatives by its
    centre, Γ, η and P over the window come first (a vectorised loop), then their sums
    into D and G.
    """
    n = x.shape[0]
    m = c0.shape[0]
    n_k = dcentre.shape[1]
    out = np.zeros((n, n_k))
    grad = np.zeros((n_columns, n_k))
    width = 2 * size.max() + 1 if m else 1
    tc, tg, te, tp = np.empty(width), np.empty(width), np.empty(width), np.empty(width)  # ∂v/∂(c, Γ, η, P)
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
        j0, j1 = max(cp - k, 0), min(cp + k, n - 1) + 1
        if j1 <= j0:
            continue
        xs = x[j0:j1]
        nt = j1 - j0
        for t in range(nt):
            z = (xs[t] - c) / g
            z2 = z * z
            q = 1.0 + 4.0 * z2
            lz = (2.0 / math.pi) / q
            gz = gauss_norm * _exp(-gauss_k * z2)
            shape = e * lz + (1.0 - e) * gz
            dshape_dz = e * (2.0 / math.pi) * (-8.0 * z) / (q * q) - (1.0 - e) * gz * 2.0 * gauss_k * z
            ez = _exp(-z2)
            h = 2.0 * z * ez
            dh_dz = 2.0 * ez * (1.0 - 2.0 * z2)
            fr = 1.0 - asymmetry * h / tan_t  # the asymmetry factor, 1 where P = 0
            ok = fr > 0.0
            f = fr if ok else 0.0
            df_dc = -asymmetry * (dh_dz * (-1.0 / g) * tan_t - h * dtan_dc) / (tan_t * tan_t) if ok else 0.0
            df_dg = -asymmetry * dh_dz * (-z / g) / tan_t if ok else 0.0
            df_dp = -h / tan_t if ok else 0.0
            v0 = scale * shape
            tc[t] = (v0 * dls_dc + scale * dshape_dz * (-1.0 / g)) * f + v0 * df_dc
            tg[t] = (v0 * dls_dg + scale * dshape_dz * (-z / g)) * f + v0 * df_dg
            te[t] = (v0 * dls_de + scale * (lz - gz)) * f
            tp[t] = v0 * df_dp
        s_c, s_g, s_e, s_p = 0.0, 0.0, 0.0, 0.0
        for t in range(nt):
            j = j0 + t
            a, b, d = ip * tc[t], ip * tg[t], ip * te[t]
            for kk in range(n_k):
                out[j, kk] += a * dcentre[p, kk] + b * dfwhm[p, kk] + d * deta[p, kk]
            pj = probe[j]
            s_c += pj * tc[t]
            s_g += pj * tg[t]
            s_e += pj * te[t]
            s_p += pj * tp[t]
            if k_asym >= 0:
                out[j, k_asym] += ip * tp[t]
        for kk in range(n_k):
            grad[col, kk] += s_c * dcentre[p, kk] + s_g * dfwhm[p, kk] + s_e * deta[p, kk]
        if k_asym >= 0:
            grad[col, k_asym] += s_p
    return out, grad


design_derivatives = None if numba is None else _vector_jit(_design_derivatives)
