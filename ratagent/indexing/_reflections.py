"""The reflection enumeration of :func:`ratagent.indexing.refine.reflections_of_form`,
compiled with numba.

The hkl box |h|, |k|, |l| ≤ bound is walked in the order of numpy's ``meshgrid(...,
indexing="ij")``, one of each Friedel pair (first non-zero index positive), and the
reflections with 0 < q ≤ q_max are kept in that order. q is summed as the numpy path's
monomials times the form, (h², k², l², hk, hl, kl) · (A, B, C, D, E, F), term by term:
the two agree to the last few bits (a matrix product sums in its own order), which
matters only for a reflection at q_max, or for the order of two at the same q.

``enumerate_reflections`` is None where numba is not installed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["enumerate_reflections"]

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the numpy path stays correct
    numba = None


def _enumerate(full, bh, bk, bl, q_max):  # pragma: no cover - compiled
    a, b, c, d, e, f = full[0], full[1], full[2], full[3], full[4], full[5]
    n_max = (2 * bh + 1) * (2 * bk + 1) * (2 * bl + 1) // 2 + 1
    hkl = np.empty((n_max, 3), np.int64)
    q = np.empty(n_max, np.float64)
    n = 0
    for h in range(-bh, bh + 1):
        if h < 0:
            continue
        fh = float(h)
        for k in range(-bk, bk + 1):
            if h == 0 and k < 0:
                continue
            fk = float(k)
            for l in range(-bl, bl + 1):
                if h == 0 and k == 0 and l <= 0:
                    continue
                fl = float(l)
                v = fh * fh * a
                v += fk * fk * b
                v += fl * fl * c
                v += fh * fk * d
                v += fh * fl * e
                v += fk * fl * f
                if v > 0.0 and v <= q_max:
                    hkl[n, 0] = h
                    hkl[n, 1] = k
                    hkl[n, 2] = l
                    q[n] = v
                    n += 1
    return hkl[:n].copy(), q[:n].copy()


enumerate_reflections = None if numba is None else numba.njit(cache=True, nogil=True)(_enumerate)
