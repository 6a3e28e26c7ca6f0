"""The training loop: patterns rendered on the fly from the bank, a curriculum of phases,
exact checkpoint/resume, and DDP under ``torchrun``.

1. Read the bank into memory (reflection lists are small); set aside an impurity pool.
2. For each step: pick the phase, draw B records and B sets of conditions with the run's
   numpy generator, render them with :func:`ratagent.simulation.simulate_batch` on the
   training device, and take one AdamW step on the ViT's loss.
3. Every ``checkpoint_every`` steps write ``state.pt`` (model, optimiser, scheduler, numpy
   and torch generator states, step) atomically; a new call resumes from it exactly.
4. At the end, write the model as a ratagent checkpoint (``model/``), uncalibrated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ratagent.crystallography import sg_to_eg
from ratagent.instrument import Instrument
from ratagent.model.calibration import Calibration
from ratagent.model.checkpoint import save
from ratagent.model.vit import ViT
from ratagent.simulation import ReflectionList, iter_bank, simulate_batch
from training.card import render_card
from training.config import FitConfig

__all__ = ["export", "fit", "load_records", "make_batch", "split_impurities"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def load_records(bank_dir: str | Path, max_records: int = 0) -> list[ReflectionList]:
    """All records of a bank (at most ``max_records`` if > 0), in bank order."""
    path = Path(bank_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"structure bank not found: {path} (build it with `python -m training bank`)")
    records = []
    for rec in iter_bank(path):
        if len(rec) > 0:
            records.append(rec)
        if max_records and len(records) >= max_records:
            break
    if not records:
        raise ValueError(f"structure bank {path} holds no records with reflections")
    return records


def split_impurities(records: list[ReflectionList], pool: int) -> tuple[list, list]:
    """(impurity phases, training records): the first min(pool, n/4) records are impurities."""
    n_imp = min(pool, len(records) // 4)
    return records[:n_imp], records[n_imp:]


def make_batch(
    records: list[ReflectionList],
    impurities: list[ReflectionList],
    instrument: Instrument,
    augmentation,
    batch_size: int,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch: intensity (B, N) float32, mask (B, N) bool, target (B,) EG index 0–98."""
    pick = rng.integers(0, len(records), size=batch_size)
    batch = [records[i] for i in pick]
    conditions = augmentation.sample(rng, batch_size)
    out = simulate_batch(batch, instrument, conditions, rng, impurities=impurities, device=device)
    target = torch.tensor([sg_to_eg(r.sg_number) - 1 for r in batch], dtype=torch.long, device=device)
    mask = torch.ones_like(out.counts, dtype=torch.bool)
    return out.counts.float(), mask, target


def _lr_lambda(config: FitConfig):
    def factor(step: int) -> float:
        _, phase, k = config.phase_at(min(step, config.total_steps - 1))
        warm = min(1.0, (k + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        cosine = 0.5 * (1 + math.cos(math.pi * k / phase.steps))
        return phase.lr * warm * (0.1 + 0.9 * cosine)

    return factor


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class _Run:
    """One process's share of a training run: the model, its optimiser and where it stands."""

    config: FitConfig
    device: torch.device
    rank: int
    world: int
    model: ViT
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    records: list
    impurities: list
    step: int = 0
    wall_before: float = 0.0  # training wall time of earlier calls (resumed runs)

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _start(config: FitConfig) -> _Run:
    """The process group (under torchrun), the bank and a fresh model, optimiser and rng."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device(config.device)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    impurities, records = split_impurities(
        load_records(config.bank_dir, config.max_records), config.impurity_pool
    )
    torch.manual_seed(config.seed)
    model = ViT(config.model, generator=torch.Generator().manual_seed(config.seed)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(config))
    rng = np.random.default_rng([config.seed, rank])
    return _Run(config, device, rank, world, model, optimiser, scheduler, rng, records, impurities)


def _resume(run: _Run, state_path: Path) -> None:
    """Load the run's saved state, if any: the weights, optimiser, schedule, rngs and step."""
    if not state_path.is_file():
        return
    state = torch.load(state_path, map_location=run.device, weights_only=False)
    run.model.load_state_dict(state["model"])
    run.optimiser.load_state_dict(state["optimiser"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.rng.bit_generator.state = state["rng"][run.rank]
    torch.set_rng_state(state["torch_rng"])
    run.step = int(state["step"])
    run.wall_before = float(state.get("wall_s", 0.0))
    logger.info("resumed %s at step %d", state_path.parent, run.step)


def _train_step(run: _Run, net: torch.nn.Module, instrument: Instrument) -> tuple[str, float, float]:
    """One optimiser step on a freshly rendered batch; the phase, the loss and the batch accuracy."""
    cfg = run.config
    _, phase, _ = cfg.phase_at(run.step)
    x, mask, target = make_batch(run.records, run.impurities, instrument, phase.augmentation, cfg.batch_size,
                                 run.rng, run.device)
    output = net(x, mask)
    loss = run.model.loss(output, target, cfg.loss_weights)
    run.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimiser.step()
    run.scheduler.step()
    run.step += 1
    return phase.name, float(loss.detach()), float((output.log_p.argmax(1) == target).float().mean())


def _save(run: _Run, state_path: Path, wall_s: float) -> None:
    """Write the resumable state (every process's rng, gathered on rank 0)."""
    rngs = [run.rng.bit_generator.state]
    if run.distributed:
        gathered: list[Any] = [None] * run.world
        torch.distributed.all_gather_object(gathered, run.rng.bit_generator.state)
        rngs = gathered
    if run.rank == 0:
        _save_state(state_path, {
            "model": run.model.state_dict(), "optimiser": run.optimiser.state_dict(),
            "scheduler": run.scheduler.state_dict(), "rng": rngs, "torch_rng": torch.get_rng_state(),
            "step": run.step, "config": run.config.to_dict(), "wall_s": wall_s,
            "n_records": len(run.records), "n_impurities": len(run.impurities),
        })


def fit(config: FitConfig, *, max_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) a ViT as configured; returns a summary dict.

    Parameters
    ----------
    config : FitConfig
    max_steps : int, optional
        Stop after this global step (for time-boxed sessions); a later call resumes.
    progress : bool
        Show a tqdm bar.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _start(config)
    state_path = out / STATE_FILE
    _resume(run, state_path)
    net = torch.nn.parallel.DistributedDataParallel(run.model) if run.distributed else run.model
    instrument = Instrument.from_grid(config.model.grid)
    stop = min(config.total_steps, max_steps if max_steps is not None else config.total_steps)
    started = time.perf_counter()
    with (out / "train_log.jsonl").open("a") as log_file:
        bar = tqdm(total=stop, initial=run.step, disable=not progress or run.rank != 0, desc="fit")
        net.train()
        while run.step < stop:
            phase, loss, acc = _train_step(run, net, instrument)
            bar.update(1)
            if run.rank == 0 and (run.step % 10 == 0 or run.step == stop):
                log_file.write(json.dumps({"step": run.step, "phase": phase, "loss": loss, "acc": acc,
                                           "lr": run.scheduler.get_last_lr()[0]}) + "\n")
                log_file.flush()
                bar.set_postfix(phase=phase, loss=f"{loss:.3f}", acc=f"{acc:.2f}")
            if run.step % config.checkpoint_every == 0 or run.step == stop:
                _save(run, state_path, run.wall_before + time.perf_counter() - started)
        bar.close()
    elapsed = time.perf_counter() - started
    summary = {
        "step": run.step,
        "total_steps": config.total_steps,
        "wall_s_this_call": elapsed,
        "wall_s": run.wall_before + elapsed,
        "device": str(run.device),
        "world_size": run.world,
        "n_records": len(run.records),
        "n_impurities": len(run.impurities),
    }
    if run.rank == 0 and run.step >= config.total_steps:
        training = {"fit": config.to_dict(), "summary": summary}
        summary["model_id"] = save(run.model.cpu(), Calibration(), out / "model", overwrite=True,
                                   training=training, card=lambda mid: render_card(mid, training))
    if run.distributed:
        torch.distributed.destroy_process_group()
    return summary


def export(run_dir: str | Path, out: str | Path | None = None, note: str | None = None) -> str:
    """Write the model of a run's latest state checkpoint as a ratagent checkpoint.

    For a run stopped before its last step (time-boxed sessions): the card records the
    step reached. ``note`` (e.g. the history of a run continued under another config)
    goes into the training record and the card. Returns the model id.
    """
    from ratagent.model.vit import ViTConfig

    run = Path(run_dir)
    state_path = run / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"no {STATE_FILE} in {run}: nothing to export")
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    config = state["config"]
    model = ViT(ViTConfig.from_dict(config["model"], saved=True))
    model.load_state_dict(state["model"])
    total = sum(p["steps"] for p in config["phases"])
    summary = {"step": int(state["step"]), "total_steps": total, "exported_from": str(state_path)}
    summary |= {k: state[k] for k in ("wall_s", "n_records", "n_impurities") if k in state}
    if "n_records" not in summary and Path(config["bank_dir"]).is_dir():  # states written before 0.1
        imp, rec = split_impurities(
            load_records(config["bank_dir"], config["max_records"]), config["impurity_pool"]
        )
        summary |= {"n_records": len(rec), "n_impurities": len(imp)}
    training = {"fit": config, "summary": summary} | ({"notes": note} if note else {})
    return save(
        model,
        Calibration(),
        Path(out) if out else run / "model",
        overwrite=True,
        training=training,
        card=lambda mid: render_card(mid, training),
    )
