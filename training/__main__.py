"""``python -m training <command>``: bank, fit, export, calibrate, evaluate, compare, finetune.

* ``bank DIR --n N [--structures icsd]``: build an EG-balanced structure bank (sharded,
  parallel, resumable).
* ``fit CONFIG.toml [--max-steps S] [--time-budget S]``: train with the curriculum; resumes.
* ``export RUN``: write a run's latest state as a checkpoint.
* ``calibrate CHECKPOINT``: fit temperature and prior weight on the measured dev set.
* ``evaluate [--checkpoint DIR] [--dev FILE] [--synthetic BANK] [--out DIR] [--card]``:
  model beside the frequency prior on the measured dev set, and beside chance on
  synthetic patterns from a held-out bank under each curriculum preset; JSON report and
  plots. ``--pipeline``: NN alone vs NN + indexing + Pawley.
* ``compare BASE NEW``: two ``evaluate --pipeline`` runs of the dev set side by side:
  figures on the whole set and each half, and every pattern whose verdict or leader moved.
* ``finetune SOURCE --out DIR``: retrain a checkpoint on measured, labelled patterns (an
  ``.npz`` or a directory with ``labels.csv``; ``training.finetune.CatalogSource`` for
  the Bluesky catalog).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.devsplit import DEV_SET as DEFAULT_DEV


def _bank(args: argparse.Namespace) -> int:
    from ratagent.simulation import check_absences, write_bank

    paths = write_bank(
        args.directory,
        args.n,
        shard_size=args.shard_size,
        seed=args.seed,
        d_min=args.d_min,
        structures=args.structures,
        workers=args.workers,
    )
    report = check_absences(args.directory)
    print(f"bank {args.directory}: {len(paths)} shards; absence check: {report}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from training.config import FitConfig
    from training.fit import fit

    config = FitConfig.from_toml(args.config, device=args.device)
    print(json.dumps(fit(config, max_steps=args.max_steps, time_budget_s=args.time_budget), indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.fit import export

    print(f"exported model {export(args.run, args.out, args.note)}")
    return 0


def _table(rows: dict[str, dict]) -> str:
    head = (
        f"{'':14s} {'n':>5s} {'top-1':>7s} {'top-5':>7s} {'system':>7s} {'NLL':>6s} {'ECE':>6s} {'DAG≤2':>6s}"
        f" {'desc.':>6s} {'anc.':>6s} {'branch':>6s}"
    )
    lines = [head]
    for name, r in rows.items():
        dag = r["dag"]
        lines.append(
            f"{name:14s} {r['n']:5d} {r['top1']:7.1%} {r['top5']:7.1%} {r['crystal_system']:7.1%} "
            f"{r['nll']:6.2f} {r['ece']:6.3f} {dag['within_2']:6.1%}"
            + "".join(f" {dag.get(k, float('nan')):6.1%}" for k in ("descendant", "ancestor", "branch"))
        )
    return "\n".join(lines)


def _dev_halves(dev: str | Path):
    """The fixed halves of the shipped dev set (:func:`training.devsplit.dev_split`) when
    ``dev`` is that file, else None: another set has no split to report on."""
    from training.devsplit import dev_split

    return dev_split() if Path(dev).resolve() == DEFAULT_DEV.resolve() else None


def _evaluate(args: argparse.Namespace) -> int:
    from ratagent.model.calibration import Calibration
    from ratagent.model.inference import load
    from training.calibrate import cross_fitted_probs, network_scores
    from training.evaluate import (
        evaluate_probs,
        load_dev_set,
        plot_error_flows,
        plot_report,
        prior_probs,
        write_report,
    )

    if args.pipeline:
        return _pipeline(args)
    patterns, eg = load_dev_set(args.dev)
    clf = load(args.checkpoint)
    scores = network_scores(clf, patterns)
    halves = _dev_halves(args.dev)
    cross, _ = cross_fitted_probs(scores, eg, halves=halves)
    rows = {
        "paper prior": evaluate_probs(prior_probs(eg.size), eg),
        "model raw": evaluate_probs(Calibration().probs(scores), eg),
        "model 2-fold": evaluate_probs(cross, eg),
        "model shipped": evaluate_probs(clf.calibration.probs(scores), eg),
    }
    print(f"measured dev set {args.dev} ({eg.size} patterns), model {clf.model_id}")
    print(_table(rows))
    print("raw: T=1, no prior; 2-fold: (T, λ) fitted on the other half of the dev set "
          f"({'random halves' if halves is None else 'the fixed mineral-grouped halves'});")
    print("shipped: the checkpoint's calibration (fitted on this whole set: in-sample)")
    synthetic = _synthetic_rows(clf, args) if args.synthetic else {}
    if synthetic:
        print(f"synthetic patterns from {args.synthetic} ({args.n_synthetic} per preset, seed "
              f"{args.seed}), network uncalibrated; chance = uniform over 99 EGs")
        print(_table(synthetic))
    report = {"dev_set": str(args.dev), "model_id": clf.model_id, "results": rows,
              "synthetic": {"bank": args.synthetic, "results": synthetic}}  # fmt: skip
    path = write_report(report, args.out)
    plots = plot_report(cross, eg, args.out, title=f"model {clf.model_id[:8]}, 2-fold calibration")
    plots.append(plot_error_flows({"paper prior": prior_probs(eg.size), "model 2-fold": cross}, eg, args.out))
    print(f"report: {path}; plots: {', '.join(str(p) for p in plots)}")
    if args.card:
        card = _write_card_section(args.checkpoint, rows, args.dev, synthetic, args.synthetic)
        print(f"model card updated: {card}")
    return 0


def _synthetic_rows(clf, args: argparse.Namespace) -> dict[str, dict]:
    """Chance and the raw network on patterns rendered from a held-out bank, per preset."""
    from ratagent.model.calibration import Calibration
    from training.config import PRESETS
    from training.evaluate import evaluate_probs, synthetic_scores, uniform_probs
    from training.fit import load_records

    names = args.presets.split(",")
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        raise ValueError(f"unknown preset(s) {unknown}; expected some of {sorted(PRESETS)}")
    records = load_records(args.synthetic)  # read once for every preset
    rows: dict[str, dict] = {}
    for name in names:
        scores, eg = synthetic_scores(clf, records, PRESETS[name], args.n_synthetic, seed=args.seed)
        if not rows:
            rows["chance"] = evaluate_probs(uniform_probs(eg.size), eg)
        rows[f"{name} raw"] = evaluate_probs(Calibration().probs(scores), eg)
    return rows


CARD_BEGIN = "<!-- evaluation:begin -->"
CARD_END = "<!-- evaluation:end -->"


#: What a shipped model should reach (issue 7): dev set with honest (2-fold) calibration,
#: and clean synthetic patterns.
BAR = {"top1": 0.25, "top5": 0.65, "ece": 0.05, "clean_top1": 0.85}


def _bar_line(dev: dict, clean: dict | None) -> str:
    """One sentence: each figure of the bar, measured, and whether it is met."""

    def item(name: str, value: float, goal: float) -> str:
        return f"{name} {value:.1%} (≥ {goal:.0%}: {'met' if value >= goal else 'NOT met'})"

    parts = [
        item("dev top-1", dev["top1"], BAR["top1"]),
        item("dev top-5", dev["top5"], BAR["top5"]),
        f"dev ECE {dev['ece']:.3f} (≤ {BAR['ece']}: {'met' if dev['ece'] <= BAR['ece'] else 'NOT met'})",
    ]
    if clean is not None:
        parts.append(item("clean synthetic top-1", clean["top1"], BAR["clean_top1"]))
    return "Against the bar (2-fold calibrated on the dev set): " + "; ".join(parts) + "."


def _write_card_section(
    checkpoint: str | None,
    rows: dict[str, dict],
    dev: str,
    synthetic: dict[str, dict] | None = None,
    bank: str | None = None,
) -> Path:
    """Put the measured table into the checkpoint's MODEL_CARD.md (replacing an older one).

    The rest of the card is written again from the checkpoint's training record where it
    has one (:func:`training.card.render_card`), so a card follows the renderer's fields.
    """
    import datetime

    from ratagent.model.checkpoint import DEFAULT_CHECKPOINT, MODEL_CARD_FILE, load_checkpoint
    from training.card import render_card

    folder = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    card = folder / MODEL_CARD_FILE
    loaded = load_checkpoint(folder)
    if loaded.training.get("fit"):
        text = render_card(loaded.model_id, loaded.training, loaded.training.get("calibration"))
    else:
        text = card.read_text(encoding="utf-8") if card.is_file() else ""
        if CARD_BEGIN in text:
            text = text[: text.index(CARD_BEGIN)] + text[text.index(CARD_END) + len(CARD_END) :]
    section = "\n".join(
        [
            CARD_BEGIN,
            "## Measured evaluation (python -m training evaluate)",
            "",
            f"Measured {datetime.date.today().isoformat()} on `{Path(dev).name}` ({rows['paper prior']['n']} "
            "measured RRUFF patterns, Cu Kα). Rows: the paper's frequency prior alone; the network "
            "uncalibrated; with (T, λ) fitted on the other half of the set (honest; for the shipped set "
            "its fixed mineral-grouped halves); with the shipped calibration (fitted on the whole set: "
            "in-sample).",
            "",
            "```",
            _table(rows),
            "```",
            "",
            _bar_line(rows["model 2-fold"], (synthetic or {}).get("clean raw")),
        ]
        + (
            [
                "",
                f"Synthetic patterns from the held-out bank `{bank}` (EG-balanced, rendered under each "
                "curriculum preset), network uncalibrated, beside chance (1/99):",
                "",
                "```",
                _table(synthetic),
                "```",
            ]
            if synthetic
            else []
        )
        + [CARD_END]
    )
    card.write_text(text.rstrip() + "\n\n" + section + "\n", encoding="utf-8")
    return card


def _pipeline(args: argparse.Namespace) -> int:
    """The agent's whole path (no cell) over the dev set; report on the whole set and each half."""
    import numpy as np

    from ratagent.agent import AgentConfig
    from training.devsplit import dev_groups
    from training.evaluate import load_dev_set
    from training.pipeline import (
        TRUST_GRID,
        agent_overrides,
        choose_thresholds,
        format_report,
        pipeline_report,
        plot_pipeline,
        replayed,
        run_pipeline,
    )

    patterns, eg = load_dev_set(args.dev)
    split = _dev_halves(args.dev)
    shipped = split is not None
    halves = split if shipped else np.full(len(eg), "-")
    groups = dev_groups() if shipped else None  # intervals counting mineral groups
    indices = None
    if args.limit:
        indices = range(0, len(patterns), max(1, len(patterns) // args.limit))[: args.limit]
        print(f"{len(indices)} of {len(patterns)} patterns: a hint, not a figure to report")
    config = agent_overrides(args.set or [])
    calibrations = None
    if shipped:  # each half's network posterior calibrated on the other half only
        from ratagent.model.inference import load
        from training.calibrate import half_calibrations, network_scores

        calibrations = half_calibrations(network_scores(load(args.checkpoint), patterns), eg, halves)
    out = Path(args.out) / "pipeline"
    cases = run_pipeline(patterns, eg, halves, out, checkpoint=args.checkpoint, config=config,
                         radiation="Cu", calibrations=calibrations, jobs=args.jobs, indices=indices)
    if indices is not None:
        wanted = set(indices)
        cases = [c for c in cases if c["index"] in wanted]
    # the trust step as this configuration has it (the same function the agent calls; the
    # stored cases keep what came before it, so cases of an earlier run are scored alike)
    agent_config = AgentConfig(**config)
    reports = {"whole set": pipeline_report(replayed(cases, agent_config), groups)}
    for h in ("A", "B"):
        sel = [c for c in cases if c["half"] == h]
        if sel:
            reports[f"half {h}"] = pipeline_report(replayed(sel, agent_config), groups)
    if args.choose_thresholds:
        for tune, held_out in (("A", "B"), ("B", "A")):
            chosen, _ = choose_thresholds([c for c in cases if c["half"] == tune], agent_config)
            picked = ", ".join(f"{k}={getattr(chosen, k)}" for k in TRUST_GRID)
            reports[f"half {held_out}, thresholds chosen on {tune} ({picked})"] = pipeline_report(
                replayed([c for c in cases if c["half"] == held_out], chosen), groups)
    print(f"dev set {args.dev}; cases in {out}")
    print(format_report(reports))
    (out / "report.json").write_text(json.dumps(reports, indent=2))
    print(f"plot: {plot_pipeline(reports, out)}")
    if args.results:
        from training.pipeline import results_markdown

        command = ("python -m training evaluate --pipeline --jobs 2 --choose-thresholds "
                   "--results docs/results.md")
        text = results_markdown(reports, command)
        if calibrations:
            text += ("\nEach half's patterns were assessed with the network's calibration fitted on the "
                     "other half: " + "; ".join(f"half {h}: T = {c.temperature:.3f}, λ = {c.prior_weight:.3f}"
                                          for h, c in sorted(calibrations.items())) + ".\n")
        Path(args.results).write_text("# Verdicts on the measured dev set\n\n" + text, encoding="utf-8")
        print(f"results: {args.results}")
    print(f"report: {out / 'report.json'}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from training.finetune import FinetuneConfig, finetune, open_source

    config = FinetuneConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        bank_dir=args.bank,
        synthetic_fraction=args.synthetic_fraction if args.bank else 0.0,
    )
    summary = finetune(args.checkpoint, open_source(args.source, args.wavelength), args.out, config)
    print(json.dumps(summary, indent=2))
    print(f"fine-tuned model {summary['model_id']} in {args.out} (uncalibrated: run "
          "`python -m training calibrate` on data it has not seen)")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from training.calibrate import calibrate_checkpoint
    from training.evaluate import load_dev_set

    patterns, eg = load_dev_set(args.dev)
    cal, _, _ = calibrate_checkpoint(args.checkpoint, patterns, eg, out=args.out)
    print(f"calibrated {args.checkpoint}: T={cal.temperature:.4g}, prior weight λ={cal.prior_weight:.4g}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Two pipeline runs of the dev set side by side (:func:`training.pipeline.compare_cases`)."""
    from training.devsplit import dev_groups, dev_split
    from training.pipeline import CASES_FILE, compare_cases, format_comparison, read_cases

    runs = []
    for d in (args.base, args.new):
        path = Path(d)
        if not (path / CASES_FILE).is_file() and (path / "pipeline" / CASES_FILE).is_file():
            path = path / "pipeline"  # the --out of evaluate --pipeline
        if not (path / CASES_FILE).is_file():
            raise FileNotFoundError(f"{d}: no {CASES_FILE} (give the --out of `evaluate --pipeline` or its "
                                    "pipeline/ folder)")
        runs.append(read_cases(path))
    # the shipped mineral groups, where the runs are of the shipped dev set (its halves agree)
    half, groups = dev_split(), dev_groups()
    shipped = all(c["index"] < half.size and c["half"] == half[c["index"]] for run in runs for c in run)
    print(format_comparison(compare_cases(*runs, groups=groups if shipped else None)))
    if not shipped:
        print("the runs' halves are not the shipped split's: each pattern counts as its own group")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bank", help="build a structure bank")
    p.add_argument("directory")
    p.add_argument("--n", type=int, required=True, help="number of structures")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-min", type=float, default=1.0, help="smallest d-spacing stored, Å")
    p.add_argument("--structures", default="pool",
                   help="element statistics of the random structures: pool (the default) or icsd "
                        "(ratagent.simulation.structures.COMPOSITIONS; write_bank checks the name)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_bank)
    p = sub.add_parser("fit", help="train with the curriculum (resumes)")
    p.add_argument("config", help="TOML file (see training/config.py)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="a fresh run scales its curriculum to end within this wall time; any run stops at it")
    p.add_argument("--device", default=None, help="override the config's device")
    p.set_defaults(func=_fit)
    p = sub.add_parser("export", help="write a run's latest state as a checkpoint (uncalibrated)")
    p.add_argument("run", help="run directory (holds state.pt)")
    p.add_argument("--out", default=None, help="checkpoint directory (default RUN/model)")
    p.add_argument("--note", default=None, help="history of the run, for the training record and card")
    p.set_defaults(func=_export)
    p = sub.add_parser("calibrate", help="fit temperature and prior weight on the measured dev set")
    p.add_argument("checkpoint", help="checkpoint directory (written back unless --out)")
    p.add_argument("--dev", default=str(DEFAULT_DEV))
    p.add_argument("--out", default=None, help="write the calibrated checkpoint here instead")
    p.set_defaults(func=_calibrate)
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the measured dev set")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: shipped)")
    p.add_argument("--dev", default=str(DEFAULT_DEV))
    p.add_argument("--out", default="outputs/evaluate")
    p.add_argument("--card", action="store_true", help="write the table into the checkpoint's model card")
    p.add_argument("--synthetic", default=None, metavar="BANK",
                   help="also score patterns rendered from this held-out structure bank")
    p.add_argument("--n-synthetic", type=int, default=1000, help="patterns per preset with --synthetic")
    p.add_argument("--presets", default="clean,realistic,hard,measured", help="presets, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic conditions")
    p.add_argument("--pipeline", action="store_true", help="NN alone vs NN + indexing + Pawley (slow)")
    p.add_argument("--limit", type=int, default=0, help="with --pipeline: evenly spaced subset of N patterns")
    p.add_argument("--jobs", type=int, default=1, help="with --pipeline: worker processes (one thread each)")
    p.add_argument("--choose-thresholds", action="store_true",
                   help="with --pipeline: choose the trust thresholds on each half, report on the other")
    p.add_argument("--results", default=None, metavar="FILE.md",
                   help="with --pipeline: also write the figures as a Markdown table (docs/results.md)")
    p.add_argument(
        "--set", action="append", metavar="NAME=VALUE",
        help="with --pipeline: an AgentConfig field for this run, e.g. index_cells=3 (repeatable); "
             "compare the run with `python -m training compare`",
    )
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("compare", help="two evaluate --pipeline runs side by side")
    p.add_argument("base", help="--out of the first run (or its pipeline/ folder)")
    p.add_argument("new", help="--out of the second run")
    p.set_defaults(func=_compare)
    p = sub.add_parser("finetune", help="retrain a checkpoint on measured, labelled patterns")
    p.add_argument("source", help=".npz file or directory with labels.csv (never rruff_dev.npz)")
    p.add_argument("--checkpoint", default=None, help="start from this checkpoint (default: shipped)")
    p.add_argument("--out", required=True, help="directory of the new (uncalibrated) checkpoint")
    p.add_argument("--wavelength", type=float, default=None, help="Å, where the source does not say")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--bank", default=None, help="structure bank: mix simulated patterns into each batch")
    p.add_argument("--synthetic-fraction", type=float, default=0.5)
    p.set_defaults(func=_finetune)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"training {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
