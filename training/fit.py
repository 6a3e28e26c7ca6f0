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
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from ratagent.simulation import ReflectionList, bank_settings, iter_bank, simulate_batch
from training.card import render_card
from training.config import FitConfig, Phase

__all__ = ["export", "fit", "load_records", "make_batch", "replanned", "scaled", "split_impurities"]

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


def _lr_factor(config: FitConfig, step: int) -> float:
    """Learning rate at a global step: per-phase linear warm-up, then cosine to 10 %."""
    _, phase, k = config.phase_at(min(step, config.total_steps - 1))
    warm = min(1.0, (k + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * k / phase.steps))
    return phase.lr * warm * (0.1 + 0.9 * cosine)


def scaled(config: FitConfig, total_steps: int) -> FitConfig:
    """The curriculum stretched or shrunk to about ``total_steps``, phase proportions kept."""
    return replace(config, phases=_stretched(config.phases, total_steps / config.total_steps))


def _stretched(phases: tuple[Phase, ...], factor: float) -> tuple[Phase, ...]:
    """The phases, each ``factor`` times as long (at least one step)."""
    return tuple(replace(p, steps=max(1, round(p.steps * factor))) for p in phases)


def replanned(config: FitConfig, step: int, seconds_per_step: list[float], time_left_s: float) -> FitConfig:
    """The curriculum with its phases not yet begun (from the one starting at ``step`` on)
    rescaled, proportions kept, so that they fill ``BUDGET_FILL`` of ``time_left_s`` at
    ``seconds_per_step`` (one per phase); the phases before are as they were."""
    first, _, k = config.phase_at(step)
    if k:
        raise ValueError(f"step {step} is not the first of a phase")
    rest = config.phases[first:]
    planned = sum(p.steps * t for p, t in zip(rest, seconds_per_step[first:], strict=True))
    factor = max(0.0, time_left_s) * BUDGET_FILL / planned
    return replace(config, phases=config.phases[:first] + _stretched(rest, factor))


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
    budgeted: bool = False  # the curriculum was scaled to a time budget (kept in the state)
    plan_s_per_step: list[float] | None = None  # each phase's speed as the budget's plan assumes it
    bank: dict[str, Any] | None = None  # the settings the bank was drawn with (bank_settings)

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _start(config: FitConfig) -> _Run:
    """The process group (under torchrun), the bank and a fresh model, optimiser and rng."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
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
    rng = np.random.default_rng([config.seed, rank])
    run = _Run(config, device, rank, world, model, optimiser, None,  # type: ignore[arg-type]
               rng, records, impurities, bank=bank_settings(config.bank_dir))
    # the schedule reads run.config at every step, so a curriculum scaled to a time budget applies
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _lr_factor(run.config, step))
    return run


def _resume(run: _Run, state_path: Path) -> None:
    """Load the run's saved state, if any: the weights, optimiser, schedule, rngs and step."""
    if not state_path.is_file():
        return
    state = torch.load(state_path, map_location=run.device, weights_only=False)
    # a bank rebuilt under the run with other settings: it would not resume exactly (a run
    # continued on another bank names another bank_dir, as configs/cpu_v4.toml does)
    same_dir = state.get("config", {}).get("bank_dir") == run.config.bank_dir
    if same_dir and state.get("bank") not in (None, run.bank):
        raise ValueError(f"{state_path}: the run began on {run.config.bank_dir} drawn with {state['bank']}; "
                         f"it now holds a bank drawn with {run.bank}")
    run.model.load_state_dict(state["model"])
    run.optimiser.load_state_dict(state["optimiser"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.rng.bit_generator.state = state["rng"][run.rank]
    torch.set_rng_state(state["torch_rng"])
    run.step = int(state["step"])
    run.wall_before = float(state.get("wall_s", 0.0))
    if "phase_steps" in state:
        # a curriculum scaled to a time budget when the run began: its phases keep their
        # scaled lengths; phases the config adds after them (a run continued on a fresh
        # bank, as configs/cpu_v5.toml continues cpu_strided) follow at their own lengths
        run.budgeted = True
        stored = [int(n) for n in state["phase_steps"]]
        phases = run.config.phases
        if len(phases) < len(stored):
            raise ValueError(f"{state_path}: the run was scaled over {len(stored)} phases, but its config "
                             f"lists {len(phases)}; a continued run may add phases, not drop them")
        run.config = replace(run.config, phases=tuple(
            replace(p, steps=n) for p, n in zip(phases, stored, strict=False)) + tuple(phases[len(stored):]))
    logger.info("resumed %s at step %d", state_path.parent, run.step)


def _train_step(
    run: _Run, net: torch.nn.Module, instrument: Instrument, phase: Phase | None = None
) -> tuple[str, float, float]:
    """One optimiser step on a freshly rendered batch (under ``phase``'s conditions if
    given, else the curriculum's); the phase, the loss and the batch accuracy."""
    cfg = run.config
    if phase is None:
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
            "n_records": len(run.records), "n_impurities": len(run.impurities), "bank": run.bank,
        } | ({"phase_steps": [p.steps for p in run.config.phases]} if run.budgeted else {}))


def _describe(device: torch.device) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: the device a figure came from."""
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_phases(run: _Run, net: torch.nn.Module, instrument: Instrument, phases: tuple[Phase, ...],
                 steps_each: int, deadline: float) -> list[float]:
    """Seconds per step of each phase, timed on real training steps under its conditions
    (at least one each; no more once ``time.perf_counter()`` passes ``deadline``)."""
    seconds_per_step = []
    for phase in phases:
        _synchronise(run.device)
        t0 = time.perf_counter()
        timed = 0
        while timed < max(1, steps_each) and (timed == 0 or time.perf_counter() < deadline):
            _train_step(run, net, instrument, phase)
            timed += 1
        _synchronise(run.device)
        seconds_per_step.append((time.perf_counter() - t0) / timed)
    return seconds_per_step


def _fit_to_budget(run: _Run, net: torch.nn.Module, instrument: Instrument, budget_s: float) -> None:
    """Scale a fresh run's curriculum so that it ends within ``budget_s`` seconds.

    Times real training steps under each phase's conditions in turn (after a few that
    absorb start-up costs; ``PROBE_STEPS`` in all, fewer once the probe has used a tenth
    of the budget), since the phases render at different speeds, then stretches or
    shrinks every phase by the same factor so that the remaining steps fill
    ``BUDGET_FILL`` of the time left. The scaled phase lengths are kept in the state, so a
    resumed run follows the same curriculum.
    """
    started = time.perf_counter()
    # probe under a provisional curriculum long enough to hold the probe in its first phase
    run.config = scaled(run.config, max(run.config.total_steps, 100 * (PROBE_WARMUP + PROBE_STEPS)))
    phases = run.config.phases
    for _ in range(PROBE_WARMUP):
        _train_step(run, net, instrument)
        if time.perf_counter() - started > 0.05 * budget_s:
            break
    seconds_per_step = _time_phases(run, net, instrument, phases, PROBE_STEPS // len(phases),
                                    started + 0.1 * budget_s)
    left = budget_s - (time.perf_counter() - started)
    planned = sum(p.steps * t for p, t in zip(phases, seconds_per_step, strict=True))  # s, at these lengths
    # the probe's steps are the curriculum's first ones: the rest fills the time left
    rest = max(1, int(run.config.total_steps * left * BUDGET_FILL / planned))
    run.config = scaled(run.config, run.step + rest)
    run.budgeted = True
    run.plan_s_per_step = seconds_per_step
    logger.info("time budget %.0f s (%s s/step): %d steps (%s)", budget_s,
                "/".join(f"{t:.3f}" for t in seconds_per_step), run.config.total_steps,
                _phase_steps(run.config))


def _phase_steps(config: FitConfig) -> str:
    """The curriculum as "name steps, ..." for the log."""
    return ", ".join(f"{p.name} {p.steps}" for p in config.phases)


def _replan(run: _Run, phase_started: tuple[int, float], time_left_s: float,
            time_phases: Callable[[tuple[Phase, ...]], list[float]]) -> None:
    """At the first step of a phase of a run scaled in this call: when the phase just ended
    ran more than ``REPLAN_RATIO`` times slower or faster than the plan assumed, the phases
    still to come are timed again (``time_phases``, on real steps under the machine's load
    now) and rescaled to the time left at those speeds.

    Timing them again, rather than scaling every speed by the ended phase's ratio, serves
    both causes of a wrong plan: the machine's load changed (another job started or
    ended), which slows every phase alike, and one phase's few timed steps at the start
    were disturbed (a job beside them ended as the first phase's were timed at 0.8 s a
    step, which then ran at 0.14 s; scaling the others by that ratio planned them six
    times too long)."""
    step0, t0 = phase_started
    if run.step - step0 < REPLAN_MIN_STEPS:
        return
    ended, _, _ = run.config.phase_at(step0)
    ratio = (time.perf_counter() - t0) / (run.step - step0) / run.plan_s_per_step[ended]
    if max(ratio, 1 / ratio) <= REPLAN_RATIO:
        return
    first = ended + 1
    start, before = run.step, run.config.total_steps
    began = time.perf_counter()
    run.plan_s_per_step = [*run.plan_s_per_step[:first], *time_phases(run.config.phases[first:])]
    # the timing's steps are the next phase's first ones: replan from that phase's start
    left = time_left_s - (time.perf_counter() - began)
    run.config = replanned(run.config, start, run.plan_s_per_step, left)
    logger.info("phase %s ran at %.2f× the speed planned; timed again (%s s/step): %d steps planned, "
                "not %d (%s)", run.config.phases[ended].name, 1 / ratio,
                "/".join(f"{t:.3f}" for t in run.plan_s_per_step[first:]), run.config.total_steps, before,
                _phase_steps(run.config))


#: Steps that absorb start-up costs, then steps timed, before a curriculum is fitted to a budget.
PROBE_WARMUP, PROBE_STEPS = 5, 30
#: Share of the time left that the scaled curriculum is planned to fill (rendering costs
#: differ between phases; a run that would overrun stops at the budget and keeps its state).
BUDGET_FILL = 0.9
#: A phase that ran this many times slower or faster than planned has the phases after it timed again.
REPLAN_RATIO = 1.25
REPLAN_MIN_STEPS = 20  # ... timed over at least this many steps
REPLAN_PROBE_STEPS = 10  # steps timed of each phase still to come when the plan is made again


def fit(
    config: FitConfig,
    *,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume training) a ViT as configured; returns a summary dict.

    Parameters
    ----------
    config : FitConfig
    max_steps : int, optional
        Stop after this global step (for time-boxed sessions); a later call resumes.
    time_budget_s : float, optional
        Wall-clock seconds for this call. A fresh run scales its curriculum (every phase
        by the same factor) to end within it, from the measured speed of its first steps,
        and rescales the phases still to come whenever one ran at another speed than timed
        (:func:`_replan`); any run stops and saves its state when the budget is spent.
    progress : bool
        Show a tqdm bar.
    """
    if time_budget_s is not None and not (math.isfinite(time_budget_s) and time_budget_s >= 0):
        raise ValueError(f"time_budget_s must be a number of seconds >= 0, got {time_budget_s!r}")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _start(config)
    state_path = out / STATE_FILE
    _resume(run, state_path)
    net = torch.nn.parallel.DistributedDataParallel(run.model) if run.distributed else run.model
    instrument = Instrument.from_grid(config.model.grid)
    started = time.perf_counter()
    first_step = run.step
    net.train()
    if time_budget_s is not None and run.step == 0:
        if run.distributed:
            raise ValueError("time_budget_s scales the curriculum of a single-process run only")
        _fit_to_budget(run, net, instrument, time_budget_s)
    config = run.config
    limit = max_steps if max_steps is not None else math.inf
    stop = min(config.total_steps, limit)
    phase_started = (run.step, time.perf_counter())
    with (out / "train_log.jsonl").open("a") as log_file:
        bar = tqdm(total=stop, initial=run.step, disable=not progress or run.rank != 0, desc="fit")
        while run.step < stop:
            # a scaled run (plan_s_per_step set) has a time budget in this call
            if run.plan_s_per_step is not None and config.phase_at(run.step)[2] == 0:
                before = run.step
                _replan(run, phase_started, time_budget_s - (time.perf_counter() - started),
                        lambda phases: _time_phases(run, net, instrument, phases, REPLAN_PROBE_STEPS,
                                                    math.inf))
                config = run.config
                stop = min(config.total_steps, limit)
                bar.total = stop
                bar.update(run.step - before)  # the steps that timed the phases to come
                phase_started = (run.step, time.perf_counter())
            phase, loss, acc = _train_step(run, net, instrument)
            bar.update(1)
            spent = time_budget_s is not None and time.perf_counter() - started >= time_budget_s
            if run.rank == 0 and (run.step % 10 == 0 or run.step == stop or spent):
                log_file.write(json.dumps({"step": run.step, "phase": phase, "loss": loss, "acc": acc,
                                           "lr": run.scheduler.get_last_lr()[0]}) + "\n")
                log_file.flush()
                bar.set_postfix(phase=phase, loss=f"{loss:.3f}", acc=f"{acc:.2f}")
            if run.step % config.checkpoint_every == 0 or run.step == stop or spent:
                _save(run, state_path, run.wall_before + time.perf_counter() - started)
            if spent:
                break
        bar.close()
    _synchronise(run.device)
    elapsed = time.perf_counter() - started
    summary = {
        "step": run.step,
        "total_steps": config.total_steps,
        "wall_s_this_call": elapsed,
        "wall_s": run.wall_before + elapsed,
        "samples_per_s_this_call": (run.step - first_step) * config.batch_size / elapsed,
        "device": _describe(run.device),
        "world_size": run.world,
        "n_records": len(run.records),
        "n_impurities": len(run.impurities),
        "bank": run.bank,
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
    summary |= {k: state[k] for k in ("wall_s", "n_records", "n_impurities", "bank") if k in state}
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
