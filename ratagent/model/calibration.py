"""Post-hoc calibration of EG scores, the :class:`EGPosterior` type, and calibration metrics.

Calibration (the talk's "Phase 3"): the network's fused EG log-probabilities ℓ (any logits
work) are divided by a temperature T and an empirical-Bayes log prior π over EGs is added
with weight λ:

    p(e | x) = softmax_e(ℓ_e / T + λ · π_e).

T and λ are fitted by minimising the negative log-likelihood on held-out (ℓ, label) pairs
(:func:`fit_calibration`). T > 1 "warms up" an overconfident network (the talk found T ≈ 5
on RRUFF); λ < 1 avoids double-counting a prior the weights have already absorbed.

Labels in this module are **0-based EG indices** (EG number − 1), as the network's outputs
are; :class:`EGPosterior` reports EG numbers (1..99).

The metrics (top-k accuracy, NLL, ECE) are the ones training's evaluation reports.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Calibration",
    "EGPosterior",
    "expected_calibration_error",
    "fit_calibration",
    "negative_log_likelihood",
    "top_k_accuracy",
]

logger = logging.getLogger(__name__)

#: Bounds of the fitted temperature (a T outside them means the held-out set is unusable).
T_BOUNDS = (0.05, 100.0)
#: Bounds of the fitted prior weight λ: 0 (no prior) to 2 (prior counted twice).
LAMBDA_BOUNDS = (0.0, 2.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_scores(name: str, scores: Any, n_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, n_classes), got {arr.shape}")
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ValueError(f"{name} has {arr.shape[1]} classes, expected {n_classes}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values")
    return arr


def _check_targets(targets: Any, n: int, n_classes: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be integers of shape ({n},), got {t.dtype} {t.shape}")
    if n and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(
            f"targets must be 0-based class indices in [0, {n_classes}), got range [{t.min()}, {t.max()}]"
        )
    return t.astype(np.intp)


@dataclass(frozen=True, eq=False)
class EGPosterior:
    """A calibrated probability for each of the extinction groups.

    Parameters
    ----------
    probs : array, shape (n_eg,)
        probs[i] is the probability of EG i + 1; non-negative, sums to 1.
    model_id : str
        Id of the checkpoint that produced it (see :mod:`ratagent.model.checkpoint`).
    meta : mapping, optional
        Free metadata (e.g. the source file).
    """

    probs: np.ndarray
    model_id: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float64)
        if p.ndim != 1 or p.size == 0:
            raise ValueError(f"probs must be one-dimensional and non-empty, got shape {p.shape}")
        if not np.isfinite(p).all() or (p < 0).any():
            raise ValueError("probs must be finite and non-negative")
        if abs(p.sum() - 1.0) > 1e-4:
            raise ValueError(f"probs must sum to 1, got {p.sum():.6f}")
        p = p / p.sum()
        p.setflags(write=False)
        object.__setattr__(self, "probs", p)

    @property
    def n_eg(self) -> int:
        """Number of extinction groups."""
        return int(self.probs.size)

    def top(self, k: int = 5) -> list[tuple[int, float]]:
        """The k most probable EGs as (EG number, probability), most probable first.

        Ties are broken by the lower EG number.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(int(i) + 1, float(self.probs[i])) for i in order]

    @property
    def argmax(self) -> int:
        """The most probable EG number (1-based)."""
        return int(np.argmax(self.probs)) + 1

    def prob(self, eg: int) -> float:
        """Probability of EG number ``eg`` (1-based)."""
        if not 1 <= eg <= self.n_eg:
            raise ValueError(f"eg must be an EG number in 1..{self.n_eg}, got {eg}")
        return float(self.probs[eg - 1])

    @property
    def entropy(self) -> float:
        """Shannon entropy −Σ p log p in nats (0 = certain, log 99 ≈ 4.595 = uniform)."""
        p = self.probs[self.probs > 0]
        return float(-(p * np.log(p)).sum())

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        """JSON-ready summary: model id, entropy, and the top k."""
        return {
            "model_id": self.model_id,
            "entropy_nats": self.entropy,
            "top": [{"eg": eg, "probability": p} for eg, p in self.top(k)],
        }


@dataclass(frozen=True, eq=False)
class Calibration:
    """p = softmax(ℓ / T + λ · π): temperature T, prior weight λ, log prior π.

    Parameters
    ----------
    temperature : float
        T > 0; 1 leaves the scores as they are.
    prior_weight : float
        λ ≥ 0; 0 ignores the prior.
    log_prior : array, shape (n_eg,), optional
        Log prior over EGs (e.g. ``ratagent.crystallography.read_paper_prior()``); required
        when ``prior_weight`` is not 0. It is normalised to log-probabilities here.
    """

    temperature: float = 1.0
    prior_weight: float = 0.0
    log_prior: np.ndarray | None = None

    def __post_init__(self) -> None:
        t, lam = float(self.temperature), float(self.prior_weight)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be a positive finite number, got {self.temperature!r}")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"prior_weight must be finite and >= 0, got {self.prior_weight!r}")
        lp = self.log_prior
        if lp is not None:
            lp = np.asarray(lp, dtype=np.float64)
            if lp.ndim != 1 or not np.isfinite(lp).all():
                raise ValueError(f"log_prior must be a finite 1-D array, got shape {lp.shape}")
            lp = _log_softmax(lp)
            lp.setflags(write=False)
        elif lam != 0:
            raise ValueError(f"prior_weight={lam} needs a log_prior")
        object.__setattr__(self, "temperature", t)
        object.__setattr__(self, "prior_weight", lam)
        object.__setattr__(self, "log_prior", lp)

    def log_probs(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated log-probabilities, shape (n, n_eg), from scores ℓ of shape (n, n_eg)."""
        z = _check_scores("scores", np.atleast_2d(scores)) / self.temperature
        if self.log_prior is not None:
            if self.log_prior.size != z.shape[1]:
                raise ValueError(
                    f"log_prior has {self.log_prior.size} entries, scores have {z.shape[1]} classes"
                )
            z = z + self.prior_weight * self.log_prior
        return _log_softmax(z)

    def probs(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, shape (n, n_eg)."""
        return np.exp(self.log_probs(scores))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "temperature": self.temperature,
            "prior_weight": self.prior_weight,
            "log_prior": None if self.log_prior is None else self.log_prior.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        lp = d.get("log_prior")
        return cls(
            temperature=float(d["temperature"]),
            prior_weight=float(d["prior_weight"]),
            log_prior=None if lp is None else np.asarray(lp, dtype=np.float64),
        )


def fit_calibration(
    scores: np.ndarray,
    targets: np.ndarray,
    log_prior: np.ndarray | None = None,
    *,
    fit_prior_weight: bool = True,
) -> Calibration:
    """Fit T (and λ) by minimising the held-out NLL with L-BFGS-B.

    NLL(T, λ) = mean_i [logsumexp_e(ℓ_ie / T + λ π_e) − (ℓ_iy / T + λ π_y)], with the exact
    gradient ∂/∂T = mean_i[(ℓ_iy − E_p ℓ_i) / T²], ∂/∂λ = mean_i[E_p π − π_y]. The fit runs
    in log T; T ∈ ``T_BOUNDS``, λ ∈ ``LAMBDA_BOUNDS``.

    Parameters
    ----------
    scores : array, shape (n, n_eg)
        Held-out network scores ℓ (fused log-probabilities or logits).
    targets : array of int, shape (n,)
        0-based EG indices.
    log_prior : array, shape (n_eg,), optional
        Log prior π. Without it only T is fitted.
    fit_prior_weight : bool
        If False, λ is fixed at 1 (with a prior) and only T is fitted.

    Returns
    -------
    Calibration
    """
    from scipy.optimize import minimize  # lazy: scipy.optimize is slow to import

    s = _check_scores("scores", scores)
    y = _check_targets(targets, s.shape[0], s.shape[1])
    if s.shape[0] == 0:
        raise ValueError("fit_calibration needs at least one held-out example")
    lp = None if log_prior is None else Calibration(1.0, 0.0, log_prior).log_prior
    if lp is not None and lp.size != s.shape[1]:
        raise ValueError(f"log_prior has {lp.size} entries, scores have {s.shape[1]} classes")
    rows = np.arange(s.shape[0])
    fit_lam = lp is not None and fit_prior_weight

    def nll_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        t = math.exp(params[0])
        lam = params[1] if fit_lam else (1.0 if lp is not None else 0.0)
        z = s / t + (lam * lp if lp is not None else 0.0)
        logp = _log_softmax(z)
        p = np.exp(logp)
        nll = -logp[rows, y].mean()
        d_t = ((s[rows, y] - (p * s).sum(1)) / t**2).mean()  # ∂NLL/∂T
        grad = [d_t * t]  # chain rule for log T
        if fit_lam:
            grad.append(((p @ lp) - lp[y]).mean())
        return float(nll), np.asarray(grad)

    x0 = [0.0] + ([1.0] if fit_lam else [])
    bounds = [(math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1]))] + ([LAMBDA_BOUNDS] if fit_lam else [])
    res = minimize(nll_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds)
    if not res.success:
        logger.warning("calibration fit did not converge: %s", res.message)
    t = math.exp(res.x[0])
    lam = float(res.x[1]) if fit_lam else (1.0 if lp is not None else 0.0)
    logger.info("fitted calibration T=%.4g, λ=%.4g, held-out NLL=%.4f", t, lam, res.fun)
    return Calibration(temperature=t, prior_weight=lam, log_prior=lp)


# --------------------------------------------------------------------------- metrics


def top_k_accuracy(probs: np.ndarray, targets: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose target is among the k highest probabilities.

    Ties at the k-th place count against the target (the target must beat or be listed
    before, in stable order, every class outside the top k).
    """
    p = _check_scores("probs", probs)
    y = _check_targets(targets, p.shape[0], p.shape[1])
    if not 1 <= k <= p.shape[1]:
        raise ValueError(f"k must be in 1..{p.shape[1]}, got {k}")
    topk = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float((topk == y[:, None]).any(axis=1).mean())


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray, eps: float = 1e-12) -> float:
    """Mean −log p(target), nats; probabilities are clipped at ``eps``."""
    p = _check_scores("probs", probs)
    y = _check_targets(targets, p.shape[0], p.shape[1])
    return float(-np.log(np.clip(p[np.arange(p.shape[0]), y], eps, None)).mean())


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., ICML 2017).

    ECE = Σ_b (n_b / n) · |acc_b − conf_b|, where conf is the top-1 probability, acc whether
    the top-1 class is the target, and bin b holds conf ∈ ((b−1)/B, b/B] (the first bin
    includes 0).
    """
    p = _check_scores("probs", probs)
    y = _check_targets(targets, p.shape[0], p.shape[1])
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)
