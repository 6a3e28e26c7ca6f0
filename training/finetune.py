"""Retraining on measured, labelled patterns: pluggable sources and the fine-tuning loop.

A *source* is any iterable of :class:`LabelledPattern` (a measured :class:`Pattern` and
its extinction group). Three ship here:

* :class:`NpzSource` — one ``.npz`` with ``two_theta`` (N,) or (n, N), ``intensity``
  (n, N), ``space_group`` or ``extinction_group`` (n,), and ``wavelength`` (scalar or
  (n,)); the layout of ``training/data/rruff_dev.npz``.
* :class:`DirectorySource` — pattern files readable by :func:`ratagent.patterns.read_pattern`
  plus a ``labels.csv`` with columns ``file`` and ``space_group`` (or
  ``extinction_group``) and optionally ``wavelength``.
* :class:`CatalogSource` — Bluesky runs in a ratagent :class:`~ratagent.catalog.Catalog`
  whose start document records the sample's known space group (``md["space_group"]``,
  e.g. reference samples measured with ``symmetry_scan(..., md={"space_group": 62})``);
  every frame of the detector's stream is one training pattern. Runs without the key are
  skipped: the agent's own decisions are never used as labels.

:func:`finetune` starts from a checkpoint, trains the whole network with AdamW at a small
learning rate on the source's patterns (resampled to the model grid once), optionally
mixed with simulated patterns from a bank so the model does not forget the classes the
measured set lacks, and writes a new, *uncalibrated* checkpoint (calibrate it on data the
fine-tuning never saw). The measured dev set ``rruff_dev.npz`` is refused as a source:
it is for validation and calibration only.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ratagent.crystallography import N_EG, sg_to_eg
from ratagent.model.calibration import Calibration
from ratagent.model.checkpoint import load_checkpoint, save
from ratagent.model.inference import Classifier
from ratagent.patterns import CU_KA1_ANGSTROM, Pattern, read_pattern

__all__ = [
    "CatalogSource",
    "DirectorySource",
    "FinetuneConfig",
    "LabelledPattern",
    "NpzSource",
    "finetune",
    "open_source",
]

logger = logging.getLogger(__name__)

#: Files that must never be trained on (validation and calibration only).
FORBIDDEN_SOURCES = ("rruff_dev.npz",)


class LabelledPattern(NamedTuple):
    """A measured pattern and its extinction group (1–99)."""

    pattern: Pattern
    eg: int


def _eg_of(name: str, value: Any, *, space_group: bool) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: label {value!r} is not an integer") from None
    if space_group:
        if not 1 <= number <= 230:
            raise ValueError(f"{name}: space group {number} outside 1–230")
        return sg_to_eg(number)
    if not 1 <= number <= N_EG:
        raise ValueError(f"{name}: extinction group {number} outside 1–{N_EG}")
    return number


def _refuse_dev(path: Path) -> None:
    if path.name in FORBIDDEN_SOURCES:
        raise ValueError(
            f"{path} is the measured dev set: it is for validation and calibration only, "
            "never for training"
        )


class NpzSource:
    """Labelled patterns from one ``.npz`` file (layout in the module docstring)."""

    def __init__(self, path: str | Path, wavelength: float | None = None) -> None:
        self.path = Path(path)
        _refuse_dev(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"npz source not found: {self.path}")
        self.wavelength = wavelength

    def __iter__(self) -> Iterator[LabelledPattern]:
        with np.load(self.path) as z:
            keys = set(z.files)
            for key in ("two_theta", "intensity"):
                if key not in keys:
                    raise ValueError(f"{self.path}: missing array {key!r} (has {sorted(keys)})")
            label_key = next((k for k in ("space_group", "extinction_group") if k in keys), None)
            if label_key is None:
                raise ValueError(f"{self.path}: needs 'space_group' or 'extinction_group' labels")
            tth, inten, labels = z["two_theta"], z["intensity"], z[label_key]
            wl = z["wavelength"] if "wavelength" in keys else None
        if inten.ndim != 2 or labels.shape != (inten.shape[0],):
            raise ValueError(
                f"{self.path}: intensity must be (n, N) and {label_key} (n,), "
                f"got {inten.shape} and {labels.shape}"
            )
        if wl is None and self.wavelength is None:
            logger.info("%s has no 'wavelength'; assuming Cu Kα1 (%.5f Å)", self.path, CU_KA1_ANGSTROM)
        default_wl = self.wavelength if self.wavelength is not None else CU_KA1_ANGSTROM
        for i in range(inten.shape[0]):
            x = tth if tth.ndim == 1 else tth[i]
            w = default_wl if wl is None else float(np.ravel(wl)[i] if np.size(wl) > 1 else wl)
            name = f"{self.path.name}[{i}]"
            yield LabelledPattern(
                Pattern(x, inten[i], w, meta={"source": name}),
                _eg_of(name, labels[i], space_group=label_key == "space_group"),
            )


class DirectorySource:
    """Pattern files in a directory, labelled by its ``labels.csv``."""

    def __init__(self, directory: str | Path, wavelength: float | None = None) -> None:
        self.directory = Path(directory)
        self.labels = self.directory / "labels.csv"
        if not self.labels.is_file():
            raise FileNotFoundError(
                f"{self.directory} has no labels.csv (columns: file, space_group or extinction_group)"
            )
        self.wavelength = wavelength

    def __iter__(self) -> Iterator[LabelledPattern]:
        with self.labels.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for n, row in enumerate(rows, start=2):
            where = f"{self.labels}:{n}"
            if not row.get("file"):
                raise ValueError(f"{where}: empty 'file'")
            space_group = bool(row.get("space_group"))
            if not space_group and not row.get("extinction_group"):
                raise ValueError(f"{where}: needs a space_group or extinction_group")
            path = self.directory / row["file"]
            _refuse_dev(path)
            try:
                wl = float(row["wavelength"]) if row.get("wavelength") else self.wavelength
            except ValueError:
                raise ValueError(f"{where}: wavelength {row['wavelength']!r} is not a number") from None
            label = row["space_group"] if space_group else row["extinction_group"]
            eg = _eg_of(where, label, space_group=space_group)
            yield LabelledPattern(read_pattern(path, wavelength=wl), eg)


class CatalogSource:
    """Frames of runs in a ratagent catalog whose start document names the space group.

    Parameters
    ----------
    catalog : ratagent.catalog.Catalog
    detector : str
        Name of the detector object in the stream (its fields ``{detector}_intensity``,
        and configuration ``{detector}_two_theta``, ``{detector}_wavelength``).
    stream : str
    label_key : str
        Start-document key holding the known space group.
    """

    def __init__(self, catalog: Any, detector: str = "det", stream: str = "primary",
                 label_key: str = "space_group") -> None:  # fmt: skip
        self.catalog, self.detector, self.stream, self.label_key = catalog, detector, stream, label_key

    def __iter__(self) -> Iterator[LabelledPattern]:
        det = self.detector
        for uid in self.catalog.uids():
            run = self.catalog[uid]
            start = run.metadata["start"]
            if self.label_key not in start:
                continue
            eg = _eg_of(f"run {uid[:8]}", start[self.label_key], space_group=True)
            if self.stream not in run:
                continue
            stream = run[self.stream]
            try:
                config = stream.metadata["configuration"][det]["data"]
                tth = np.asarray(config[f"{det}_two_theta"], float)
                wavelength = float(config[f"{det}_wavelength"])
                frames = np.asarray(stream.read()[f"{det}_intensity"].values)
            except KeyError as err:
                raise ValueError(
                    f"run {uid[:8]}: stream {self.stream!r} has no detector {det!r} with "
                    f"{det}_intensity, {det}_two_theta and {det}_wavelength (missing {err})"
                ) from None
            for i, frame in enumerate(frames):
                pattern = Pattern(tth, frame, wavelength, meta={"source": f"run {uid}", "seq_num": i + 1})
                yield LabelledPattern(pattern, eg)


def open_source(spec: str, wavelength: float | None = None) -> Iterable[LabelledPattern]:
    """A source from a command-line spec: a ``.npz`` file or a directory with ``labels.csv``."""
    path = Path(spec)
    if path.suffix == ".npz":
        return NpzSource(path, wavelength)
    if path.is_dir():
        return DirectorySource(path, wavelength)
    raise ValueError(f"source {spec!r} is neither a .npz file nor a directory with labels.csv")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`finetune`."""

    steps: int = 500  # optimiser steps
    batch_size: int = 32  # measured patterns per step
    lr: float = 5e-5  # AdamW learning rate (constant after a short warm-up)
    warmup_steps: int = 50
    weight_decay: float = 0.05
    synthetic_fraction: float = 0.5  # share of each batch rendered from the bank (needs bank_dir)
    bank_dir: str | None = None  # structure bank for the synthetic share
    impurity_pool: int = 256  # bank records set aside as impurity phases (as in training)
    loss_weights: tuple[float, ...] | None = None  # None: those the checkpoint was trained with
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.synthetic_fraction < 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1), got {self.synthetic_fraction}")
        if self.bank_dir and round(self.batch_size * self.synthetic_fraction) >= self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} with synthetic_fraction {self.synthetic_fraction} "
                "leaves no measured pattern in a batch"
            )
        if self.loss_weights is not None and len(self.loss_weights) not in (3, 4):
            raise ValueError(f"loss_weights must be 3 or 4 floats, got {self.loss_weights!r}")


def finetune(
    checkpoint: str | Path | None,
    source: Iterable[LabelledPattern],
    out: str | Path,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a checkpoint on labelled measured patterns; returns a summary dict.

    The new checkpoint at ``out`` is uncalibrated (identity calibration): its old (T, λ)
    belonged to other weights.
    """
    from ratagent.instrument import Instrument
    from training.config import PRESETS
    from training.fit import load_records, make_batch, split_impurities

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.model
    items = list(source)
    if not items:
        raise ValueError("the source holds no labelled patterns")
    clf = Classifier(model, None, ckpt.model_id)
    intensity = np.empty((len(items), clf.grid.n_points), np.float32)
    mask = np.empty(intensity.shape, bool)
    for i, it in enumerate(items):
        try:
            (intensity[i],), (mask[i],) = clf.resample([it.pattern])
        except ValueError as err:
            raise ValueError(f"{it.pattern.meta.get('source', f'pattern {i}')}: {err}") from None
    target = np.array([it.eg - 1 for it in items])
    n_syn = int(round(config.batch_size * config.synthetic_fraction)) if config.bank_dir else 0
    n_meas = config.batch_size - n_syn
    impurities, records = (
        split_impurities(load_records(config.bank_dir), config.impurity_pool) if n_syn else ([], [])
    )
    weights = config.loss_weights or tuple(ckpt.training.get("fit", {}).get("loss_weights", (1.0, 1.0, 1.0)))
    instrument = Instrument.from_grid(model.config.grid)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    losses = []
    for step in tqdm(range(config.steps), desc="finetune", disable=not progress):
        for group in optimiser.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
        pick = rng.integers(0, len(items), size=n_meas)
        x = torch.from_numpy(intensity[pick])
        m = torch.from_numpy(mask[pick])
        t = torch.from_numpy(target[pick])
        if n_syn:
            xs, ms, ts = make_batch(
                records, impurities, instrument, PRESETS["measured"], n_syn, rng, torch.device("cpu")
            )
            x, m, t = torch.cat([x, xs]), torch.cat([m, ms]), torch.cat([t, ts])
        loss = model.loss(model(x, m), t, weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        losses.append(float(loss.detach()))
    model.eval()
    summary = {
        "from_model": ckpt.model_id,
        "n_patterns": len(items),
        "steps": config.steps,
        "batch_size": config.batch_size,
        "synthetic_per_batch": n_syn,
        "lr": config.lr,
        "loss_weights": list(weights),
        "loss_first": float(np.mean(losses[: max(1, len(losses) // 10)])),
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10) :])),
    }
    # the old calibration belonged to the old weights: not carried over
    training = {k: v for k, v in ckpt.training.items() if k != "calibration"} | {"finetune": summary}
    summary["model_id"] = save(model, Calibration(), out, training=training, overwrite=True)
    return summary
