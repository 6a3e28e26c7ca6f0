"""Training loop: exact resume, curriculum bookkeeping, config parsing."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ratagent.model.vit import ViT, ViTConfig
from ratagent.patterns import QGrid
from ratagent.simulation import write_bank
from training.config import PRESETS, FitConfig, Phase
from training.fit import BUDGET_FILL, STATE_FILE, export, fit, replanned, scaled

TINY = ViTConfig(grid=QGrid(two_theta_min_deg=10, two_theta_max_deg=60, step_deg=0.05), patch_size=40,
                 width=16, depth=1, heads=2, pe_hidden=8)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    d = tmp_path_factory.mktemp("bank")
    write_bank(d, 16, shard_size=8, seed=3, d_min=1.2, workers=1, progress=False)
    return d


def _config(bank, out):
    phases = (Phase("clean", 3, PRESETS["clean"], 1e-3),
              Phase("hard", 3, replace(PRESETS["hard"], impurity_probability=0.5), 1e-3))
    return FitConfig(bank_dir=str(bank), out_dir=str(out), phases=phases, model=TINY, batch_size=4,
                     checkpoint_every=2, warmup_steps=1, impurity_pool=2, seed=7)


def test_a_run_does_not_resume_on_a_bank_rebuilt_with_other_settings(tmp_path):
    bank = tmp_path / "bank"
    write_bank(bank, 8, shard_size=8, seed=3, d_min=1.2, workers=1, progress=False)
    fit(_config(bank, tmp_path / "run"), max_steps=1, progress=False)
    for shard in bank.glob("shard-*.npz"):
        shard.unlink()
    write_bank(bank, 8, shard_size=8, seed=4, d_min=1.2, workers=1, progress=False)
    with pytest.raises(ValueError, match=r"state\.pt: the run began on .*'seed': 3.*now holds .*'seed': 4"):
        fit(_config(bank, tmp_path / "run"), progress=False)


@pytest.mark.slow
def test_resume_equals_uninterrupted(bank, tmp_path):
    full = fit(_config(bank, tmp_path / "a"), progress=False)
    assert full["step"] == 6
    assert full["bank"] == {"seed": 3, "d_min": 1.2, "balance": "eg", "structures": "pool"}
    fit(_config(bank, tmp_path / "b"), max_steps=3, progress=False)  # "killed" after step 3
    state = torch.load(tmp_path / "b" / STATE_FILE, weights_only=False)
    assert state["step"] == 3
    fit(_config(bank, tmp_path / "b"), progress=False)
    a = torch.load(tmp_path / "a" / STATE_FILE, weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / STATE_FILE, weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "a" / "model" / "model.safetensors").is_file()
    # export of the final state reproduces the model fit() wrote
    assert export(tmp_path / "a", tmp_path / "exported") == full["model_id"]
    # a note (the history of a continued run) reaches the training record and the card
    assert export(tmp_path / "a", tmp_path / "noted", note="steps 0-3 on bank A") == full["model_id"]
    assert "steps 0-3 on bank A" in (tmp_path / "noted" / "MODEL_CARD.md").read_text()


def test_phase_bookkeeping(tmp_path):
    cfg = _config(tmp_path, tmp_path)
    assert cfg.total_steps == 6
    assert cfg.phase_at(0)[1].name == "clean" and cfg.phase_at(3)[:1] == (1,) and cfg.phase_at(5)[2] == 2
    with pytest.raises(ValueError, match="step 6"):
        cfg.phase_at(6)


def test_config_from_toml(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text(
        'bank_dir = "b"\nout_dir = "o"\nbatch_size = 8\n[model]\nwidth = 32\nheads = 2\n'
        '[[phases]]\nname = "clean"\nsteps = 10\n[[phases]]\nname = "hard"\nsteps = 5\n'
        'po_probability = 0.9\nlog10_counts = [2.0, 3.0]\n'
    )
    cfg = FitConfig.from_toml(f)
    assert cfg.model.width == 32 and cfg.batch_size == 8
    assert [p.name for p in cfg.phases] == ["clean", "hard"]
    assert cfg.phases[1].augmentation.po_probability == 0.9
    assert cfg.phases[1].augmentation.log10_counts == (2.0, 3.0)
    f.write_text('bank_dir = "b"\nout_dir = "o"\n[[phases]]\nname = "x"\nsteps = 1\npreset = "nope"\n')
    with pytest.raises(ValueError, match="nope"):
        FitConfig.from_toml(f)
    f.write_text('bank_dir = "b"\nout_dir = "o"\n[model]\npeak_tokens = -4\n')
    with pytest.raises(ValueError, match=r"run\.toml: \[model\]: ViTConfig\.peak_tokens .* got -4"):
        FitConfig.from_toml(f)


CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_in_the_repository_reads_and_builds_its_network(path):
    cfg = FitConfig.from_toml(path)
    assert cfg.total_steps > 0
    assert ViT(cfg.model).num_parameters() > 0


def test_missing_bank_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="structure bank not found"):
        fit(_config(tmp_path / "none", tmp_path / "o"), progress=False)
    assert np.isfinite(1.0)


@pytest.mark.slow
def test_ddp_two_cpu_processes(bank, tmp_path):
    """torchrun with 2 CPU processes (gloo) trains and checkpoints one shared model."""
    import subprocess
    import sys
    import textwrap

    toml = tmp_path / "ddp.toml"
    toml.write_text(textwrap.dedent(f"""
        bank_dir = "{bank}"
        out_dir = "{tmp_path / 'run'}"
        batch_size = 2
        checkpoint_every = 2
        warmup_steps = 1
        impurity_pool = 0
        device = "cpu"
        [model]
        grid = {{ two_theta_min_deg = 10.0, two_theta_max_deg = 60.0, step_deg = 0.05 }}
        patch_size = 40
        width = 16
        depth = 1
        heads = 2
        pe_hidden = 8
        [[phases]]
        name = "clean"
        steps = 4
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "training", "fit", str(toml)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)
    assert state["step"] == 4 and len(state["rng"]) == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_loss_weights_must_be_three_or_four(tmp_path):
    with pytest.raises(ValueError, match="loss_weights"):
        FitConfig(bank_dir="b", out_dir=str(tmp_path), loss_weights=(1.0, 1.0))


def test_scaled_keeps_phase_proportions(tmp_path):
    cfg = replace(_config(tmp_path, tmp_path), phases=tuple(
        replace(p, steps=n) for p, n in zip(_config(tmp_path, tmp_path).phases, (300, 700), strict=True)))
    assert [p.steps for p in scaled(cfg, 100).phases] == [30, 70]
    assert [p.steps for p in scaled(cfg, 5000).phases] == [1500, 3500]
    assert [p.steps for p in scaled(cfg, 1).phases] == [1, 1]  # every phase keeps a step


def test_replanned_rescales_only_the_phases_to_come(tmp_path):
    """A run planned from timings taken while another job loaded the machine (a 10× slower
    probe planned a curriculum a tenth as long) fills the time left once the load ends."""
    base = _config(tmp_path, tmp_path)
    cfg = replace(base, phases=(*base.phases, replace(base.phases[-1], steps=100)))
    steps = (50, 100, 100)
    cfg = replace(cfg, phases=tuple(replace(p, steps=n) for p, n in zip(cfg.phases, steps, strict=True)))
    out = replanned(cfg, 50, [0.1, 0.1, 0.2], time_left_s=300.0)
    assert out.phases[0].steps == 50  # begun: kept
    # 100 + 100 steps at 0.1 and 0.2 s are 30 s; 0.9 × 300 s is nine times that
    assert [p.steps for p in out.phases[1:]] == [round(100 * 9 * BUDGET_FILL / 0.9)] * 2
    assert 0.1 * out.phases[1].steps + 0.2 * out.phases[2].steps == pytest.approx(BUDGET_FILL * 300.0)
    assert [p.steps for p in replanned(cfg, 150, [0.1, 0.1, 0.2], 2.0).phases] == [50, 100, 9]
    with pytest.raises(ValueError, match="not the first of a phase"):
        replanned(cfg, 60, [0.1, 0.1, 0.2], 300.0)


def test_a_phase_run_at_its_planned_speed_leaves_the_plan_and_a_slower_one_times_the_rest_again(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    import training.fit as fit_module

    base = _config(tmp_path, tmp_path)
    cfg = replace(base, phases=tuple(replace(p, steps=100) for p in base.phases))
    run = SimpleNamespace(config=cfg, step=100, plan_s_per_step=[0.1, 0.1])
    timed = []

    def time_phases(phases):
        timed.append(len(phases))
        return [0.2] * len(phases)  # the load that slowed the first phase slows the rest alike

    monkeypatch.setattr(fit_module.time, "perf_counter", lambda: 1000.0)
    fit_module._replan(run, (0, 1000.0 - 100 * 0.11), 100.0, time_phases)  # 1.1× the planned 0.1 s
    assert run.config is cfg and not timed
    fit_module._replan(run, (0, 1000.0 - 100 * 0.2), 100.0, time_phases)  # twice as slow as planned
    assert timed == [1]
    assert [p.steps for p in run.config.phases] == [100, round(BUDGET_FILL * 100.0 / 0.2)]
    assert run.plan_s_per_step == [0.1, 0.2]


def test_a_disturbed_timing_of_one_phase_does_not_stretch_the_others(tmp_path, monkeypatch):
    """The first phase's few timed steps shared the machine with a job that then ended (0.8 s
    a step where it then ran at 0.14 s); the other phases were timed right. Scaling their speeds by
    the first phase's 5.7× planned them nearly six times too long; timing them again keeps
    them to the time left."""
    from types import SimpleNamespace

    import training.fit as fit_module

    base = _config(tmp_path, tmp_path)
    lengths = zip(base.phases, (800, 1400), strict=True)
    cfg = replace(base, phases=tuple(replace(p, steps=n) for p, n in lengths))
    run = SimpleNamespace(config=cfg, step=800, plan_s_per_step=[0.8, 0.2])
    monkeypatch.setattr(fit_module.time, "perf_counter", lambda: 5000.0)
    fit_module._replan(run, (0, 5000.0 - 800 * 0.14), 300.0, lambda phases: [0.2] * len(phases))
    assert run.config.phases[1].steps == round(BUDGET_FILL * 300.0 / 0.2)  # 1350 steps, 270 s


@pytest.mark.slow
def test_time_budget_scales_the_curriculum_and_resumes_it(bank, tmp_path, monkeypatch):
    import training.fit as fit_module

    monkeypatch.setattr(fit_module, "PROBE_WARMUP", 1)
    monkeypatch.setattr(fit_module, "PROBE_STEPS", 2)
    cfg = _config(bank, tmp_path / "run")
    summary = fit(cfg, time_budget_s=60.0, max_steps=4, progress=False)
    state = torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)
    planned = state["phase_steps"]
    # the six configured steps, stretched to what the measured speed fits into 60 s (more
    # than six steps even on a loaded machine; the run itself stops at step 4)
    assert sum(planned) == summary["total_steps"] and summary["total_steps"] >= 6
    assert planned[0] / sum(planned) == pytest.approx(0.5, abs=0.05)
    assert summary["samples_per_s_this_call"] > 0
    # a resumed run follows the scaled curriculum, not the configured one
    summary = fit(cfg, max_steps=6, progress=False)
    assert summary["total_steps"] == sum(planned) and summary["step"] == 6
    # a spent budget stops the run with its state saved
    summary = fit(cfg, time_budget_s=0.0, progress=False)
    assert summary["step"] == 7
    assert torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)["step"] == 7
    # a continued run may add phases after the scaled ones, not drop any
    longer = replace(cfg, phases=(*cfg.phases, replace(cfg.phases[-1], steps=3)))
    summary = fit(longer, max_steps=sum(planned) + 1, progress=False)
    assert summary["total_steps"] == sum(planned) + 3 and summary["step"] == sum(planned) + 1
    with pytest.raises(ValueError, match="may add phases, not drop them"):
        fit(replace(cfg, phases=cfg.phases[:1]), max_steps=1, progress=False)


@pytest.mark.parametrize("budget", [-1.0, float("nan")])
def test_a_time_budget_that_is_no_duration_is_named(tmp_path, budget):
    with pytest.raises(ValueError, match="time_budget_s must be a number of seconds >= 0"):
        fit(_config(tmp_path, tmp_path / "run"), time_budget_s=budget, progress=False)


def test_the_model_card_names_the_peak_tokens():
    from training.card import render_card

    plain = ViTConfig().to_dict()
    peaks = ViTConfig(peak_tokens=48).to_dict()
    assert "peak tokens" not in render_card("0" * 16, {"fit": {"model": plain}})
    assert ", 48 peak tokens" in render_card("0" * 16, {"fit": {"model": peaks}})


def test_the_model_card_gives_patterns_seen_and_rate_and_a_kbeta_column_where_drawn():
    from training.card import render_card

    phase = {"name": "hard", "steps": 10, "lr": 1e-3, "augmentation": {"log10_counts": [2.0, 4.0]}}
    with_kbeta = {**phase, "augmentation": {**phase["augmentation"], "kbeta": [0.0, 0.02]}}
    summary = {"step": 30000, "wall_s": 5474.0, "world_size": 1}
    card = render_card("0" * 16, {"fit": {"batch_size": 32, "phases": [phase]}, "summary": summary})
    assert "- patterns seen: 960 000, 175 samples/s" in card
    assert "kbeta" not in card
    card = render_card("0" * 16, {"fit": {"batch_size": 32, "phases": [with_kbeta]}, "summary": summary})
    assert "| processed_probability | kbeta |" in card and "| 0–0.02 |" in card


def test_the_model_card_names_how_the_bank_drew_its_structures():
    from training.card import render_card

    def card(structures, balance="eg"):
        summary = {"step": 1, "bank": {"seed": 1, "d_min": 1.0, "balance": balance, "structures": structures}}
        return render_card("0" * 16, {"fit": {"bank_dir": "banks/x"}, "summary": summary})

    icsd = "(EG-balanced, all 230 space groups, elements as in the ICSD (`--structures icsd`))"
    assert icsd in card("icsd")
    assert "(EG-balanced, all 230 space groups) +" in card("pool")
    assert "(uniform over the 230 space groups) +" in card("pool", balance="sg")
    # a run older than the bank record drew from an EG-balanced pool bank
    assert "(EG-balanced, all 230 space groups) +" in render_card("0" * 16, {"fit": {}, "summary": {}})


def test_the_card_of_a_fine_tuned_checkpoint_says_what_tuned_it():
    """training.finetune keeps its parent's fit record: calibrating it or `evaluate --card`
    writes the card again with render_card, which must not pass the parent off as the model."""
    from training.card import render_card

    fit_record = {"batch_size": 32, "phases": []}
    tuned = {"from_model": "a" * 16, "n_patterns": 120, "steps": 500, "batch_size": 32,
             "synthetic_per_batch": 16, "lr": 5e-5, "loss_first": 3.5, "loss_last": 2.25}
    card = render_card("b" * 16, {"fit": fit_record, "summary": {"step": 10}, "finetune": tuned})
    assert "## Fine-tuning" in card
    assert f"from model `{'a' * 16}` (the run above) on 120 measured patterns, 16 simulated" in card
    assert "- 500 steps × 32, lr 5e-05, loss 3.5 → 2.25" in card
    assert "Fine-tuning" not in render_card("b" * 16, {"fit": fit_record})
