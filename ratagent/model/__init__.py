"""The physics-informed ViT, its calibration, checkpoints and the inference API.

>>> from ratagent.model import load
>>> clf = load()                    # the shipped checkpoint (FileNotFoundError if none yet)
>>> posterior = clf.predict(pattern)
>>> posterior.top(5)                # [(EG number, probability), ...]

Importing this package is cheap: torch is imported on first use of a name that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ratagent.model.calibration import (
        Calibration,
        EGPosterior,
        expected_calibration_error,
        fit_calibration,
        negative_log_likelihood,
        top_k_accuracy,
    )
    from ratagent.model.checkpoint import Checkpoint, load_checkpoint, save
    from ratagent.model.inference import Classifier, load
    from ratagent.model.report import classify_files, plot_classification
    from ratagent.model.vit import ViT, ViTConfig, ViTOutput

_WHERE = {
    "Calibration": "calibration",
    "EGPosterior": "calibration",
    "expected_calibration_error": "calibration",
    "fit_calibration": "calibration",
    "negative_log_likelihood": "calibration",
    "top_k_accuracy": "calibration",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save": "checkpoint",
    "Classifier": "inference",
    "load": "inference",
    "classify_files": "report",
    "plot_classification": "report",
    "ViT": "vit",
    "ViTConfig": "vit",
    "ViTOutput": "vit",
}

__all__ = [
    "Calibration",
    "Checkpoint",
    "Classifier",
    "EGPosterior",
    "ViT",
    "ViTConfig",
    "ViTOutput",
    "classify_files",
    "expected_calibration_error",
    "fit_calibration",
    "load",
    "load_checkpoint",
    "negative_log_likelihood",
    "plot_classification",
    "save",
    "top_k_accuracy",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"ratagent.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ratagent.model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
