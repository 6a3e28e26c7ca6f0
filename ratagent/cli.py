"""The ``ratagent`` command line.

Sub-commands are thin: each parses arguments and calls the library. Heavy imports
(torch, the model, Bluesky) happen inside the sub-command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _eg_info(eg: int) -> dict:
    from ratagent.crystallography import extinction_group, neighbours

    g = extinction_group(eg)
    return {
        "eg": g.number,
        "symbol": g.symbol,
        "crystal_system": g.crystal_system,
        "centring": g.centring,
        "space_groups": list(g.space_groups),
        "equivalent_settings": list(g.equivalent_symbols),
        "dag_neighbours": neighbours(g.number),
    }


def _cmd_eg(args: argparse.Namespace) -> int:
    from ratagent.crystallography import sg_to_eg

    egs = [sg_to_eg(n) for n in args.number] if args.sg else list(args.number)
    infos = [_eg_info(eg) for eg in egs]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info, n in zip(infos, args.number, strict=True):
        head = f"SG {n} → " if args.sg else ""
        print(f"{head}EG {info['eg']}: {info['symbol']}  ({info['crystal_system']}, {info['centring']})")
        print(f"  space groups:   {', '.join(map(str, info['space_groups']))}")
        if info["equivalent_settings"]:
            print(f"  other settings: {', '.join(info['equivalent_settings'])}")
        print(f"  DAG neighbours: {', '.join(map(str, info['dag_neighbours']))}")
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from ratagent.model.inference import load
    from ratagent.model.report import classify_files

    _check_plot_path(args.plot)
    if args.cell is not None:
        _check_cell_arg(args.cell)
    classifier = load(args.checkpoint)
    if args.refine or args.cell:
        return _refine_files(args, classifier)
    errors: list[str] = []
    text = classify_files(
        args.files,
        wavelength=_wavelength(args),
        top=args.top,
        as_json=args.json,
        plot_path=args.plot,
        classifier=classifier,
        columns=args.columns,
        errors=errors,
        radiation=args.radiation,
    )
    if text and text != "[]":
        print(text)
    return _report_errors(errors)


def _check_plot_path(path: str | None) -> None:
    """``--plot``: a folder that exists and a format matplotlib writes, checked before any work."""
    if path is None:
        return
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase

    target = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = target.suffix.lower().lstrip(".")
    if suffix and suffix not in formats:
        raise ValueError(f"--plot {path}: matplotlib writes no {suffix!r} files; "
                         f"use one of {', '.join(sorted(formats))}")
    if not target.parent.is_dir():
        raise ValueError(f"--plot {path}: no folder {target.parent}")


def _check_cell_arg(cell: Sequence[float]) -> None:
    """``--cell``: six numbers a cell can have, checked before any work (angles in degrees)."""
    from ratagent.crystallography.cell import check_cell

    if all(0 < a < 3.15 for a in cell[3:]):
        raise ValueError(f"--cell {' '.join(map(str, cell))}: the angles look like "
                         "radians; give them in degrees")
    try:
        check_cell(cell)
    except ValueError as exc:
        raise ValueError(f"--cell: {exc}") from None


def _report_errors(errors: list[str]) -> int:
    """Print each file's error (they name their file); the exit status: 2 if any."""
    for e in errors:
        print(f"ratagent classify: error: {e}", file=sys.stderr)
    return 2 if errors else 0


def _columns(text: str) -> list[int | str]:
    """``--columns 0,1,2`` or ``--columns 2theta,counts,esd``."""
    items = [t.strip() for t in text.split(",")]
    if len(items) not in (2, 3) or not all(items):
        raise argparse.ArgumentTypeError(f"expected 2θ,I[,σ] columns (indices or header names), got {text!r}")
    return [int(t) if t.isdigit() else t for t in items]


def _wavelength(args: argparse.Namespace) -> float | None:
    """``--wavelength``, else the Kα1 of ``--radiation`` (checked against each other)."""
    from ratagent.instrument import reading_wavelength

    return reading_wavelength(args.radiation, args.wavelength)


def _refine_files(args: argparse.Namespace, classifier) -> int:
    """The agent's path for each file: posterior, DAG walk, indexing if no cell, Pawley."""
    from ratagent.agent import Agent, format_cell
    from ratagent.instrument import stated_instrument
    from ratagent.model.report import plot_classification, plot_target
    from ratagent.patterns import naming, read_pattern

    out, errors = [], []
    for path in args.files:
        try:
            with naming(path):
                pattern = read_pattern(path, wavelength=_wavelength(args), columns=args.columns)
                instrument, source, pattern = stated_instrument(pattern, args.radiation)
                a = Agent(classifier, instrument=instrument).assess(pattern, cell=args.cell, count_time=None)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            errors.append(str(exc))
            continue
        plot = None
        if args.plot is not None:
            best = a.best
            note = f"{a.verdict}" + (f": EG {best.eg} {best.symbol}" if best is not None else "")
            try:  # the assessment stands whatever becomes of its plot
                plot = str(plot_classification(pattern, classifier.predict(pattern),
                                               plot_target(args.plot, path, len(args.files)),
                                               top=max(args.top, 10), fit=a.fit, note=note))
            except (OSError, RuntimeError) as exc:
                errors.append(f"{path}: --plot: {exc}")
        out.append(
            {
                "source": str(path),
                "radiation": f"{instrument.radiation} ({source})",
                "verdict": a.verdict,
                "refined": a.refined,
                "cell": args.cell or a.meta.get("cell_from_indexing"),
                "cells_refined": a.meta.get("cells_refined"),
                "cell_fits": a.meta.get("cell_fits"),
                "peak_snr": a.peak_snr,
                "candidates": [
                    {
                        "eg": c.eg,
                        "symbol": c.symbol,
                        "setting": c.setting,
                        "posterior": c.probability,
                        "pawley_weight": c.pawley_weight,
                        "delta_bic": c.delta_bic,
                        "rwp": c.rwp,
                    }
                    for c in a.candidates[: args.top]
                ],
                "indistinguishable": list(a.indistinguishable),
                "reasons": list(a.reasons),
                "model_id": a.model_id,
            } | ({"plot": plot} if plot is not None else {})
        )
    if args.json:
        print(json.dumps(out, indent=1))
        return _report_errors(errors)
    for r in out:
        cell = "none" if r["cell"] is None else format_cell(r["cell"])
        print(f"{r['source']}: {r['verdict']} (model {r['model_id']}; cell {cell}; "
              f"radiation {r['radiation']})")
        print(f"  {'EG':>6}  {'symbol':<22} {'fitted as':<16} {'posterior':>9} {'weight':>7} {'ΔB':>8} "
              f"{'Rwp':>6}")
        for c in r["candidates"]:
            w = "—" if c["pawley_weight"] is None else f"{c['pawley_weight']:.3f}"
            db = "—" if c["delta_bic"] is None else f"{c['delta_bic']:.1f}"
            rwp = "—" if c["rwp"] is None else f"{c['rwp']:.3f}"
            # an EG fitted only in another indexed cell has no weight in this one (nor its axes)
            setting = c["setting"]
            if c["pawley_weight"] is None and setting is not None:
                setting = "other cell"
            print(f"  {c['eg']:>6}  {c['symbol']:<22} {setting or '—':<16} {c['posterior']:>9.3f} "
                  f"{w:>7} {db:>8} {rwp:>6}")
        print("  (posterior: the network's; fitted as: the setting of the EG's fit in this cell, named by "
              "its first space group; weight: exp(−ΔB/2) over the EGs fitted in the cell; ΔB: the "
              "Pawley criterion above the best fit's; Rwp a fraction; cells in Å and °)")
        if len(r["indistinguishable"]) > 1:
            print(f"  not separable by these data: EGs {r['indistinguishable']}")
        for reason in r["reasons"]:
            print(f"  - {reason}")
        if "plot" in r:
            print(f"  plot: {r['plot']}")
    return _report_errors(errors)


def build_parser(plugins: dict | None = None) -> argparse.ArgumentParser:
    from ratagent import __version__

    parser = argparse.ArgumentParser(
        prog="ratagent", description="Extinction-group classification of powder diffraction patterns."
    )
    parser.add_argument("--version", action="version", version=f"ratagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eg", help="show extinction groups: symbol, space groups, DAG neighbours")
    p.add_argument("number", type=int, nargs="+", help="EG number 1–99 (or SG 1–230 with --sg)")
    p.add_argument("--sg", action="store_true", help="the numbers are space groups")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_eg)

    p = sub.add_parser("classify", help="rank extinction groups for pattern files")
    p.add_argument("files", nargs="+", help=".xy/.xye/.csv/.dat/.txt/.npy/.npz pattern files")
    p.add_argument(
        "--wavelength", type=float, default=None,
        help="λ in Å (required unless --radiation names a tube or each file states λ or its anode)"
    )
    p.add_argument(
        "--radiation", default=None, metavar="ANODE",
        help="Cr, Fe, Co, Cu, Mo or Ag (Kα1/Kα2 of that tube, published wavelengths), or 'mono' "
             "(one line at --wavelength: synchrotron, Kα1 monochromator). Default: the file "
             "header's anode, else mono",
    )
    p.add_argument(
        "--columns", type=_columns, default=None, metavar="2THETA,I[,SIGMA]",
        help="the columns of text files holding 2θ, I and optionally σ: 0-based indices or header "
             "names (default: by the header's names; two columns are 2θ, I; .xye three are 2θ, I, σ)",
    )
    p.add_argument("--top", type=int, default=5, help="number of ranked EGs (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", default=None,
                   help="write a plot of pattern and posterior, with --refine the best fit too "
                   "(PNG/PDF/SVG; with several files one each, <stem>_<file stem>)")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    p.add_argument(
        "--refine",
        action="store_true",
        help="run the agent's path: index the pattern (unless --cell), rank candidates by Pawley fits",
    )
    p.add_argument(
        "--cell",
        type=float,
        nargs=6,
        default=None,
        metavar=("A", "B", "C", "ALPHA", "BETA", "GAMMA"),
        help="known cell (Å, degrees): refine in it instead of indexing",
    )
    p.set_defaults(func=_cmd_classify)

    for name, ep in sorted((plugins or {}).items()):
        sub.add_parser(name, help=f"(from {ep.value.split(':')[0]}; see `ratagent {name} --help`)")
    return parser


def _plugins() -> dict:
    """Sub-commands other packages register in the ``ratagent.commands`` entry-point group.

    Each entry point names a ``main(argv) -> int``; it is imported only when its command
    runs (e.g. ``demo`` from ``sim_beamline``, which ratagent itself never imports).
    """
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="ratagent.commands")}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ratagent`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = _plugins()
    if argv and argv[0] in plugins:
        return int(plugins[argv[0]].load()(argv[1:]))
    parser = build_parser(plugins)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"ratagent {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
