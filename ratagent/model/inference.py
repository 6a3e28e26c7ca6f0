"""The :class:`Classifier`: patterns at any wavelength in, calibrated EG posteriors out.

Algorithm, per call of :meth:`Classifier.predict`:

1. map each pattern onto the model's Q grid with
   :func:`ratagent.patterns.resample_to_q_grid` (unmeasured grid points masked, not invented);
2. run the ViT in batches of ``batch_size`` under ``torch.inference_mode`` on the chosen
   device, giving fused EG log-probabilities ℓ;
3. calibrate: p = softmax(ℓ / T + λ π) (:class:`~ratagent.model.calibration.Calibration`);
4. wrap each row as an :class:`~ratagent.model.calibration.EGPosterior` with the model id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import torch

from ratagent.model.calibration import Calibration, EGPosterior
from ratagent.model.checkpoint import load_checkpoint
from ratagent.model.vit import ViT
from ratagent.patterns import Pattern, QGrid, resample_to_q_grid

__all__ = ["Classifier", "load"]

logger = logging.getLogger(__name__)


class Classifier:
    """A ViT with its calibration and grid, ready to classify patterns.

    Parameters
    ----------
    model : ViT
    calibration : Calibration, optional
        Default: identity (T = 1, no prior).
    model_id : str
        Id reported in every posterior (a checkpoint's id; "untracked" for an unsaved model).
    device : str or torch.device
        Where the network runs ("cpu", "cuda", ...).
    batch_size : int
        Patterns per forward pass.
    min_coverage : float
        Smallest fraction of the model's Q grid a pattern must cover (see
        :func:`~ratagent.patterns.resample_to_q_grid`).
    """

    def __init__(
        self,
        model: ViT,
        calibration: Calibration | None = None,
        model_id: str = "untracked",
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        min_coverage: float = 0.25,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.calibration = calibration if calibration is not None else Calibration()
        self.model_id = model_id
        self.batch_size = batch_size
        self.min_coverage = min_coverage

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, *, device: str | torch.device = "cpu", **kwargs
    ) -> Classifier:
        """Load a checkpoint directory (default: the shipped one); see :func:`load`."""
        ckpt = load_checkpoint(path)
        return cls(ckpt.model, ckpt.calibration, ckpt.model_id, device=device, **kwargs)

    @property
    def grid(self) -> QGrid:
        """The model's Q grid."""
        return self.model.config.grid

    def resample(self, patterns: Sequence[Pattern]) -> tuple[np.ndarray, np.ndarray]:
        """Patterns → intensity (B, N) float32 and mask (B, N) bool on the model's grid."""
        n = self.grid.n_points
        intensity = np.empty((len(patterns), n), np.float32)
        mask = np.empty((len(patterns), n), bool)
        for i, pattern in enumerate(patterns):
            if not isinstance(pattern, Pattern):
                raise TypeError(f"expected a Pattern, got {type(pattern).__name__} at index {i}")
            intensity[i], mask[i] = resample_to_q_grid(pattern, self.grid, min_coverage=self.min_coverage)
        return intensity, mask

    def scores(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated fused EG log-probabilities ℓ, shape (B, n_eg), float64.

        Parameters
        ----------
        intensity : array, shape (B, N)
            Intensity on the model's grid.
        mask : array of bool, shape (B, N), optional
            True where measured (default: everywhere).
        """
        x = np.asarray(intensity, np.float32)
        if x.ndim != 2 or x.shape[1] != self.grid.n_points:
            raise ValueError(f"intensity must have shape (B, {self.grid.n_points}), got {x.shape}")
        m = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
        if m.shape != x.shape:
            raise ValueError(f"mask shape {m.shape} differs from intensity shape {x.shape}")
        out = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                xb = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
                mb = torch.from_numpy(m[start : start + self.batch_size]).to(self.device)
                out.append(self.model(xb, mb).log_p.double().cpu().numpy())
        if not out:
            return np.empty((0, self.model.config.n_eg))
        return np.concatenate(out)

    def predict_arrays(self, intensity: np.ndarray, mask: np.ndarray | None = None) -> list[EGPosterior]:
        """Posteriors for intensities already on the model's grid (see :meth:`scores`)."""
        probs = self.calibration.probs(self.scores(intensity, mask))
        return [EGPosterior(p, self.model_id) for p in probs]

    @overload
    def predict(self, patterns: Pattern) -> EGPosterior: ...
    @overload
    def predict(self, patterns: Sequence[Pattern]) -> list[EGPosterior]: ...

    def predict(self, patterns: Pattern | Sequence[Pattern]) -> EGPosterior | list[EGPosterior]:
        """Calibrated EG posterior of one pattern, or a list of them for a sequence.

        Patterns may be at any wavelength; each is mapped onto the model's Q grid.

        Raises
        ------
        ValueError
            A pattern covers too little of the model's Q range.
        TypeError
            Something other than a :class:`~ratagent.patterns.Pattern` was given.
        """
        single = isinstance(patterns, Pattern)
        batch = [patterns] if single else list(patterns)
        intensity, mask = self.resample(batch)
        probs = self.calibration.probs(self.scores(intensity, mask))
        posteriors = []
        for pattern, m, p in zip(batch, mask, probs, strict=True):
            meta = {"coverage": float(m.mean())}  # fraction of the model's grid measured
            if "source" in pattern.meta:
                meta["source"] = pattern.meta["source"]
            posteriors.append(EGPosterior(p, self.model_id, meta))
        return posteriors[0] if single else posteriors


def load(
    path: str | Path | None = None, *, device: str | torch.device = "cpu", batch_size: int = 64
) -> Classifier:
    """Load a checkpoint as a :class:`Classifier`.

    Parameters
    ----------
    path : str or Path, optional
        Checkpoint directory; default the shipped one in ``ratagent/model/checkpoints/default``.
    device : str or torch.device
    batch_size : int

    Raises
    ------
    FileNotFoundError
        No checkpoint there (or none shipped yet).
    ValueError
        A corrupt or inconsistent checkpoint (see
        :func:`~ratagent.model.checkpoint.load_checkpoint`).
    """
    return Classifier.from_checkpoint(path, device=device, batch_size=batch_size)
