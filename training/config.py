"""Training configuration: the curriculum's phases and the fit settings (frozen dataclasses, TOML).

A TOML file looks like::

    bank_dir = "banks/main"
    out_dir = "runs/main"
    batch_size = 32
    seed = 0
    checkpoint_every = 200

    [model]            # any ViTConfig field
    width = 128

    [[phases]]
    name = "clean"
    steps = 2000
    preset = "clean"   # clean | realistic | hard; then any AugmentationConfig field overrides
    lr = 3e-4
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ratagent.model.vit import ViTConfig
from ratagent.simulation import AugmentationConfig

__all__ = ["PRESETS", "FitConfig", "Phase", "default_phases"]

#: Augmentation presets of the curriculum (docs/design.md: clean → instrument-realistic → hard).
PRESETS: dict[str, AugmentationConfig] = {
    # ideal powder, fixed narrow instrument profile, essentially no counting noise
    "clean": AugmentationConfig(
        zero_shift_deg=(0.0, 0.0),
        displacement_mm=(0.0, 0.0),
        u_deg2=(0.002, 0.006),
        v_deg2=(-0.002, -0.002),
        w_deg2=(0.002, 0.004),
        x_deg=(0.0, 0.03),
        y_deg=(0.0, 0.02),
        asymmetry=(0.0, 0.0),
        background=(0.0, 0.0),
        hump_height=(0.0, 0.0),
        log10_counts=(6.0, 6.0),
        po_probability=0.0,
        max_strain=0.0,
    ),
    # a laboratory diffractometer: profiles, Kα2, zero shift and displacement, background
    "realistic": AugmentationConfig(log10_counts=(3.5, 5.0), po_probability=0.0, max_strain=0.002),
    # what measured RRUFF-like patterns add: low counts, texture, impurities, strain, humps
    "hard": AugmentationConfig(
        zero_shift_deg=(-0.1, 0.1),
        displacement_mm=(-0.2, 0.2),
        u_deg2=(0.0, 0.05),
        w_deg2=(0.001, 0.03),
        x_deg=(0.0, 0.15),
        y_deg=(0.0, 0.1),
        background=(0.0, 0.3),
        hump_height=(0.0, 0.15),
        log10_counts=(1.7, 4.0),
        po_probability=0.6,
        po_ratio=(0.5, 1.5),
        impurity_probability=0.3,
        impurity_fraction=(0.02, 0.2),
        max_strain=0.005,
    ),
}
# measured patterns as databases publish them (RRUFF: background subtracted, maximum 1000,
# integers — every pattern of rruff_dev.npz), on top of the hard conditions
PRESETS["measured"] = replace(PRESETS["hard"], processed_probability=0.8)


@dataclass(frozen=True)
class Phase:
    """One curriculum phase."""

    name: str  # label in logs and checkpoints
    steps: int  # optimiser steps in this phase
    augmentation: AugmentationConfig  # conditions the patterns are drawn under
    lr: float = 3e-4  # peak learning rate of the phase (AdamW)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"phase {self.name!r}: steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"phase {self.name!r}: lr must be > 0, got {self.lr}")


def default_phases(steps: tuple[int, int, int] = (2000, 2000, 4000)) -> tuple[Phase, ...]:
    """clean → realistic → hard, with the given steps each."""
    return tuple(
        Phase(name, n, PRESETS[name], lr)
        for name, n, lr in zip(("clean", "realistic", "hard"), steps, (5e-4, 3e-4, 2e-4), strict=True)
    )


@dataclass(frozen=True)
class FitConfig:
    """Everything :func:`training.fit.fit` needs; saved beside every checkpoint."""

    bank_dir: str  # structure bank directory (``python -m training bank``)
    out_dir: str  # run directory: state checkpoints, final model, logs
    phases: tuple[Phase, ...] = field(default_factory=default_phases)  # the curriculum
    model: ViTConfig = field(default_factory=ViTConfig)  # network hyper-parameters
    batch_size: int = 32  # patterns per optimiser step (per process under DDP)
    seed: int = 0  # seeds numpy and torch generators (rank added under DDP)
    checkpoint_every: int = 200  # steps between resumable state checkpoints
    warmup_steps: int = 200  # linear learning-rate warm-up at the start of each phase
    weight_decay: float = 0.05  # AdamW weight decay
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # bits, aux, fused, system terms
    impurity_pool: int = 256  # bank records set aside as impurity phases
    max_records: int = 0  # use at most this many bank records (0: all)
    device: str = "auto"  # "auto" (cuda if present), "cpu", "cuda", "cuda:1", ...

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("FitConfig needs at least one phase")
        for name in ("batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.loss_weights) not in (3, 4):
            raise ValueError(
                f"FitConfig.loss_weights must be 3 or 4 floats (bits, aux, fused[, system]), "
                f"got {self.loss_weights!r}"
            )
        if self.warmup_steps < 0 or self.impurity_pool < 0 or self.max_records < 0:
            raise ValueError("warmup_steps, impurity_pool and max_records must be >= 0")

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def phase_at(self, step: int) -> tuple[int, Phase, int]:
        """(phase index, phase, step within the phase) of a global step (0-based)."""
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step {step} outside 0…{self.total_steps - 1}")
        start = 0
        for i, phase in enumerate(self.phases):
            if step < start + phase.steps:
                return i, phase, step - start
            start += phase.steps
        raise AssertionError("unreachable")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for run logs and model cards)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("phases", "model")}
        out["model"] = self.model.to_dict()
        out["phases"] = [
            {"name": p.name, "steps": p.steps, "lr": p.lr, "augmentation": vars(p.augmentation)}
            for p in self.phases
        ]
        return out

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> FitConfig:
        """Read a TOML file (format in the module docstring); keyword overrides win."""
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            model = ViTConfig.from_dict(data.pop("model", {}))
        except (TypeError, ValueError) as exc:  # name the file the bad [model] value is in
            raise ValueError(f"{path}: [model]: {exc}") from exc
        phases = []
        for raw in data.pop("phases", []):
            raw = dict(raw)
            preset = raw.pop("preset", raw.get("name"))
            if preset not in PRESETS:
                raise ValueError(f"{path}: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
            base = {k: raw.pop(k) for k in ("name", "steps", "lr") if k in raw}
            aug = replace(
                PRESETS[preset], **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            )
            phases.append(Phase(augmentation=aug, **base))
        if "loss_weights" in data:
            data["loss_weights"] = tuple(data["loss_weights"])
        kwargs = {"model": model, **data}
        if phases:
            kwargs["phases"] = tuple(phases)
        return cls(**kwargs)
