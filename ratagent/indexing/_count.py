"""The trial count of :func:`ratagent.indexing.trials._count`, compiled with numba.

For each trial, the (h, k) terms that can reach the last line are gathered once (the
terms come sorted by |h|, then |k|, so that the trial's bounds on |h| and |k| end the
walk instead of being tested on every term); then, line by line in order, the nearest l
of each term (the upper root of the quadratic q(h, k, l) = q_obs, rounded) gives the
term's |Δq|, and the least over the terms decides whether the line is indexed (the |Δq|
of all terms first, a loop the compiler vectorises, then their least). The arithmetic is
float32 in the order the numpy version (:func:`ratagent.indexing.trials._count_numpy`)
uses, so both give the same counts. A trial is given up once it has left more than
``max_missing`` lines unindexed: most trials of a screen fail on their first lines, and
the screen drops them anyway.

``count`` is None where numba is not installed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["count"]

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the numpy path stays correct
    numba = None


def _count(full, p, terms, hk, h_end, q_obs, tol_q, h_top, k_top, q_max,
           max_missing):  # pragma: no cover - compiled
    n_trials, m = p.shape
    n_terms = terms.shape[0]
    n_lines = q_obs.shape[0]
    n_idx = np.zeros(n_trials, np.int64)
    err = np.zeros(n_trials, np.float64)
    base = np.empty(n_terms, np.float32)
    c1 = np.empty(n_terms, np.float32)
    resid = np.empty(n_terms, np.float32)
    zero = np.float32(0.0)
    for i in range(n_trials):
        a2 = full[i, 2]
        # the terms of this trial's box whose least q over l is within the last line
        nt = 0
        h_last = h_end.shape[0] - 1
        if h_top[i] < h_last:
            h_last = int(h_top[i])
        for h in range(h_last + 1):
            for j in range(0 if h == 0 else h_end[h - 1], h_end[h]):
                if hk[j, 1] > k_top[i]:
                    break  # the rest of this |h| has larger |k|
                lin = full[i, 4] * terms[j, m] + full[i, 5] * terms[j, m + 1]
                r = 0.0
                for c in range(m):
                    r += p[i, c] * terms[j, c]
                if r - lin * lin / (4.0 * a2) > q_max:
                    continue
                base[nt] = np.float32(r)
                c1[nt] = np.float32(lin)
                nt += 1
        c32 = np.float32(a2)
        c4 = np.float32(4.0) * c32
        inv2c = np.float32(1.0) / (np.float32(2.0) * c32)
        hits, misses, total = 0, 0, 0.0
        for li in range(n_lines):
            for t in range(nt):
                u = q_obs[li] - base[t]
                l = u * c4
                l += c1[t] * c1[t]
                if l < zero:
                    l = zero
                l = np.sqrt(l)
                l -= c1[t]
                l *= inv2c
                l = np.rint(l)
                r32 = l * c32
                r32 += c1[t]
                r32 *= l
                r32 -= u
                resid[t] = abs(r32)
            best = np.float32(np.inf)
            for t in range(nt):
                if resid[t] < best:
                    best = resid[t]
            if best <= tol_q[li]:
                hits += 1
                total += best / tol_q[li]
            else:
                misses += 1
                if misses > max_missing:
                    break
        n_idx[i] = hits
        err[i] = total
    return n_idx, err


count = None if numba is None else numba.njit(cache=True, nogil=True)(_count)
