"""Benchmark: time per assessment, and the beamline's dead time, sequential against pipelined.

Part 1, the agent (1 process, 1 thread): the shipped checkpoint with the Cu Kα1/Kα2
instrument assesses

* simulated frames of the beamline's minerals (1 s counts), with the published cell
  and without one;
* measured dev patterns (every ``k``-th of ``training/data/rruff_dev.npz``), without a
  cell (the set states none);

and the median and p95 seconds per assessment are printed. With ``--reference REV`` the
same cases are timed at the same time on the code of git revision ``REV`` (a temporary
worktree, this script run on it in a subprocess on the other core) and the ratios
printed: machines here are noisy, so only a ratio measured in one run is a figure.

Part 2, the beamline (``--dead-time``): ``RE(symmetry_scan(det, samples=..., changer=...,
count_time=T, max_remeasure=0))`` on the simulated beamline in real time, with the default
agent and no cells, once sequential and once with ``pipeline=True``, for each exposure
``T``. Dead time is the run's wall time less the time the detector counted, per sample;
"steady" counts it up to the last frame only, leaving out the wait for the last
decisions (what a longer queue of samples sees).

    python benchmarks/assess.py [--dev-every 3] [--minerals 8] [--reference REV]
    python benchmarks/assess.py --dead-time [--exposures 1 5 10] [--samples 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _cases(dev_every: int, n_minerals: int, seed: int):
    """(kind, pattern, cell) of every timed assessment, the same on any revision."""
    from ratagent.instrument import Instrument
    from ratagent.patterns import Pattern
    from sim_beamline import MINERALS, PowderDetector, mineral_sample
    from training.evaluate import load_dev_set

    det = PowderDetector(name="det", instrument=Instrument(), rng=np.random.default_rng(seed))
    for name in sorted(MINERALS)[:n_minerals]:
        sample = mineral_sample(name)
        det.sample = sample
        pattern = Pattern(det.instrument.two_theta, det.frame(1.0), det.instrument.wavelength)
        yield "mineral, cell", pattern, sample.cell
        yield "mineral, no cell", pattern, None
    patterns, _ = load_dev_set(ROOT / "training/data/rruff_dev.npz")
    for pattern in patterns[::dev_every]:
        yield "dev, no cell", pattern, None


def time_cases(dev_every: int, n_minerals: int, seed: int) -> dict[str, list]:
    """Seconds per assessment of each case, by kind, on the code imported here; and under
    ``"verdicts"`` each case's verdict and leading EG (a speed change must keep them)."""
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    from ratagent.agent import Agent
    from ratagent.instrument import Instrument
    from ratagent.model import load

    torch.set_num_threads(1)
    agent = Agent(load(), instrument=Instrument())
    times: dict[str, list] = {"verdicts": []}
    cases = list(_cases(dev_every, n_minerals, seed))
    with threadpool_limits(1):
        for kind, pattern, cell in tqdm(cases, desc="assessments", file=sys.stderr):
            t0 = time.perf_counter()
            a = agent.assess_safely(pattern, cell=cell, count_time=1.0)
            times.setdefault(kind, []).append(time.perf_counter() - t0)
            times["verdicts"].append(f"{a.verdict} {a.candidates[0].eg if a.candidates else 0}")
    return times


def _reference_run(rev: str, args, tmp: str) -> subprocess.Popen:
    """Start :func:`time_cases` on git revision ``rev`` (a worktree in ``tmp``, a
    subprocess): it runs beside this code's timing, one core each, so that both see the
    same load."""
    tree = Path(tmp) / "ref"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--json", "--dev-every", str(args.dev_every), "--minerals",
           str(args.minerals), "--seed", str(args.seed)]
    return subprocess.Popen(cmd, env=env, cwd=tree, stdout=subprocess.PIPE, text=True)


def _reference_times(proc: subprocess.Popen, tmp: str, stop: bool = False) -> dict[str, list[float]]:
    """The times of :func:`_reference_run`'s subprocess, once it has finished (``stop``: killed
    first, when this side failed); its worktree removed either way."""
    try:
        if stop:
            proc.kill()
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"the reference timing failed (exit status {proc.returncode})")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "ref")],
                       check=False)
    return json.loads(out.strip().splitlines()[-1])


def _summary(times: list[float]) -> str:
    return f"median {np.median(times):6.2f} s, p95 {np.percentile(times, 95):6.2f} s (n={len(times)})"


def dead_time(exposures: list[float], n_samples: int, seed: int) -> None:
    """Print the dead time per sample, sequential against pipelined, at each exposure."""
    from bluesky import RunEngine

    from plans import symmetry_scan
    from sim_beamline import MINERALS, PowderDetector, SampleChanger, mineral_sample

    names = sorted(MINERALS)[:n_samples]
    for t in exposures:
        row = {}
        for pipeline in (False, True):
            unknown = [replace(mineral_sample(n), cell=None) for n in names]  # no cell given
            changer = SampleChanger(name="changer", samples=unknown)
            det = PowderDetector(name="det", changer=changer, rng=np.random.default_rng(seed))
            counted, read = [], []  # count time and time of every frame

            def note(name, doc, counted=counted, read=read):
                if name == "event" and "det_count_time" in doc["data"]:
                    counted.append(doc["data"]["det_count_time"])
                    read.append(doc["time"])

            RE = RunEngine({})
            RE.subscribe(note)
            t0 = time.time()
            RE(symmetry_scan(det, samples=names, changer=changer, count_time=t, max_remeasure=0,
                             pipeline=pipeline))
            total = time.time() - t0 - float(np.sum(counted))
            while_measuring = read[-1] - t0 - float(np.sum(counted))  # up to the last frame
            row[pipeline] = (total / len(names), while_measuring / len(names))
        seq, pipe = row[False], row[True]

        def share(dead: float, t: float = t) -> str:  # of the beamline's wall time
            return f"{max(dead, 0.0) / (t + max(dead, 0.0)):5.1%}"

        print(f"exposure {t:4.1f} s, {len(names)} samples: dead time per sample sequential {seq[0]:5.2f} s "
              f"({share(seq[0])} of the time), pipelined {pipe[0]:5.2f} s ({share(pipe[0])}; "
              f"{share(pipe[1])} up to the last frame); RATIO sequential/pipelined "
              f"{seq[0] / max(pipe[0], 1e-9):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev-every", type=int, default=3,
                    help="time every k-th dev pattern (454/3: 152, whose median is the whole set's to 1 %%)")
    ap.add_argument("--minerals", type=int, default=8, help="library minerals timed (alphabetical)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", metavar="REV", help="git revision to time beside this code, same run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the reference's subprocess
    ap.add_argument("--dead-time", action="store_true", help="the beamline part (real-time scans)")
    ap.add_argument("--exposures", type=float, nargs="+", default=[1.0, 5.0, 10.0])
    ap.add_argument("--samples", type=int, default=8, help="samples per dead-time scan")
    args = ap.parse_args()
    if args.dead_time:
        dead_time(args.exposures, args.samples, args.seed)
        return
    if args.json:
        print(json.dumps(time_cases(args.dev_every, args.minerals, args.seed)))
        return
    ref: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc = _reference_run(args.reference, args, tmp) if args.reference else None
        try:
            times = time_cases(args.dev_every, args.minerals, args.seed)
        except BaseException:
            if proc is not None:  # stop the other side and remove its worktree; this error stands
                with contextlib.suppress(RuntimeError):
                    _reference_times(proc, tmp, stop=True)
            raise
        if proc is not None:
            ref = _reference_times(proc, tmp)
    print("machine: 1 process, 1 thread per side" + (", both sides at once" if ref else ""))
    verdicts = times.pop("verdicts")
    if ref:
        same = sum(a == b for a, b in zip(verdicts, ref.pop("verdicts"), strict=True))
        print(f"same verdict and leading EG as {args.reference}: {same}/{len(verdicts)} cases")
    for kind, ts in times.items():
        line = f"{kind:17s} this code: {_summary(ts)}"
        if kind in ref:
            line += (f" | {args.reference}: {_summary(ref[kind])} | RATIO median "
                     f"{np.median(ref[kind]) / np.median(ts):.2f}x")
        print(line)


if __name__ == "__main__":
    main()
