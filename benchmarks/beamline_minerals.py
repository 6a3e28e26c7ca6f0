"""Verdicts of the plan's default agent on the simulated beamline's minerals, no cell given.

Runs ``RE(symmetry_scan(det, samples=every library mineral, changer=..., count_time=1.0))``
with each sample's cell withheld (``Sample(..., cell=None)``), the default agent (the
shipped checkpoint, the detector's radiation), once per seed, and scores the **final**
decision of each sample (after the re-measurements the agent asked for) against the
mineral's published space group: accept precision (accepted EG is the truth or in the
reported set) and coverage (share accepted), with Wilson 95 % intervals. The truth is
exact here; the seeds drive the counting noise only.

    python benchmarks/beamline_minerals.py --seeds 5 [--minerals quartz,halite] [--out DIR]
    python benchmarks/beamline_minerals.py --instrument synchrotron [--wavelength 0.7293]
    python benchmarks/beamline_minerals.py --anode Mo

``--instrument lab`` (default) is the simulated detector as shipped: a Cu tube, Kα1/Kα2,
2θ 5–90° in 0.01° steps; ``--anode`` takes another tube, over the d-spacings the Cu
tube's 5–90° cover (Mo: 2θ 2.3–38.0°; at most 150°). ``synchrotron`` is one line
(default 0.7293 Å, 17 keV), 2θ 2–50° in 0.005° steps and peaks about a third as wide
(:data:`SYNCHROTRON_PROFILE`), as a powder beamline with a strip detector records them;
the agent is then told one line (``radiation="mono"``), as the plan tells it for such a
detector. Each sample's reflections are listed down to the shortest d-spacing the
instrument reaches (:func:`shortest_d`). ``--impurity quartz`` mixes a second phase into
every other sample (``--impurity-fraction``, default 5 % of the integrated intensity):
an accept is right when it is the main phase's EG.

Each (seed, mineral) result is appended to ``DIR/cases.jsonl``; a rerun resumes. The
instrument (and impurity) a folder's cases were measured with is written beside them
(``instrument.json``), and a folder is resumed only with the same. The
final assessment of each sample is stored with what the trust step weighs, and the
figures are those of the trust step replayed under today's ``AgentConfig``
(``training.pipeline.replayed``, as ``python -m training evaluate --pipeline`` does): an
accept and a flag both end a sample, so only that last decision can change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

#: The peak shape of ``--instrument synchrotron`` (GSAS conventions, degrees² and degrees of
#: 2θ; :class:`ratagent.instrument.Instrument`): Gaussian FWHM 0.014° at 2θ = 5° and 0.017°
#: at 50°, Lorentzian 0.005–0.007°; the lab default's are 0.044° and 0.021–0.027° there.
SYNCHROTRON_PROFILE = {"u_deg2": 0.0008, "v_deg2": -0.0002, "w_deg2": 0.0002, "x_deg": 0.005,
                       "y_deg": 0.003}


def instrument_for(name: str, wavelength: float | None, anode: str = "Cu"):
    """The detector's :class:`~ratagent.instrument.Instrument` for ``--instrument``."""
    import numpy as np

    from ratagent.instrument import Instrument
    from ratagent.patterns import CU_KA1_ANGSTROM, q_from_two_theta, two_theta_from_q

    if name == "lab":
        if wavelength is not None:
            raise ValueError("--wavelength is for --instrument synchrotron; a lab tube has its own (--anode)")
        lab = Instrument.for_radiation(anode)
        if lab.wavelengths_angstrom == Instrument().wavelengths_angstrom:
            return lab
        # the Q range of Cu Kα1 over 5–90°, at this tube's Kα1 (beyond its reach: 180°)
        reach = q_from_two_theta(np.array([5.0, 90.0]), CU_KA1_ANGSTROM)
        lo, hi = np.nan_to_num(two_theta_from_q(reach, lab.wavelengths_angstrom[0]), nan=180.0)
        return Instrument.for_radiation(anode, two_theta_min_deg=round(float(lo), 2),
                                        two_theta_max_deg=min(150.0, round(float(hi), 2)))
    if anode != "Cu":
        raise ValueError("--anode is for --instrument lab; a synchrotron has one line (--wavelength)")
    lam = 0.7293 if wavelength is None else wavelength
    return Instrument.synchrotron(lam, two_theta_min_deg=2.0, two_theta_max_deg=50.0, step_deg=0.005,
                                  **SYNCHROTRON_PROFILE)


def _recording_agent(detector):
    """The plan's default agent (shipped checkpoint, the detector's radiation), recording
    every assessment as a case :func:`training.pipeline.replay` reads."""
    from plans.detector import frame_source
    from plans.symmetry import _instrument_for
    from ratagent.agent import Agent
    from ratagent.model import load

    class Recording(Agent):
        records: list[dict]

        def assess_safely(self, pattern, **kwargs):
            a = super().assess_safely(pattern, **kwargs)
            probs = self.classifier.predict(pattern).probs
            self.records.append({
                "verdict": a.verdict, "refined": bool(a.refined), "meta": a.meta,
                "nn_probs": [round(float(p), 6) for p in probs],
                "indistinguishable": [int(e) for e in a.indistinguishable],
                "ranking": [int(c.eg) for c in a.candidates],
                "candidates": [{"eg": int(c.eg), "delta_bic": c.delta_bic} for c in a.candidates]})
            return a

    agent = Recording(load(), instrument=_instrument_for(detector, frame_source(detector).wavelength, None))
    agent.records = []
    return agent


def shortest_d(instrument) -> float:
    """The d-spacing (Å) the samples' reflections are listed to: the library's 1 Å, or 2 % below
    the shortest the instrument reaches (a synchrotron at 0.7293 Å and 50°: 0.863 Å)."""
    from ratagent.patterns import d_spacing

    shortest = d_spacing(instrument.two_theta_max_deg, min(instrument.wavelengths_angstrom))
    return min(1.0, 0.98 * float(shortest))


def _run_seed(seed: int, names: list[str], time_scale: float, instrument, impurity: tuple[str, float] | None
              ) -> list[dict]:
    import numpy as np
    from bluesky import RunEngine

    from plans import symmetry_scan
    from ratagent.crystallography import sg_to_eg
    from sim_beamline import PowderDetector, SampleChanger, mineral_sample

    d_min = shortest_d(instrument)
    samples = [mineral_sample(n, d_min=d_min) if impurity is None or impurity[0] == n
               else mineral_sample(n, d_min=d_min, impurity=impurity[0], impurity_fraction=impurity[1])
               for n in names]
    blind = [type(s)(s.name, s.record, None, s.scattering_power, s.background, s.impurity,
                     s.impurity_fraction, s.meta) for s in samples]
    changer = SampleChanger(name="changer", samples=blind)
    det = PowderDetector(name="det", changer=changer, instrument=instrument, time_scale=time_scale,
                         rng=np.random.default_rng(seed))
    events: list[dict] = []

    def collect(name, doc):
        if name == "event" and "assessment_verdict" in doc["data"]:
            events.append(doc["data"])

    RE = RunEngine()
    agent = _recording_agent(det)
    RE(symmetry_scan(det, samples=names, changer=changer, count_time=1.0, agent=agent), collect)
    if len(agent.records) != len(events):
        raise RuntimeError(f"{len(events)} decisions but {len(agent.records)} assessments recorded")
    final = {}
    for ev, record in zip(events, agent.records, strict=True):  # the last decision of a sample is final
        final[ev["assessment_sample"]] = (ev, record)
    out = []
    for s in samples:
        ev, record = final[s.name]
        out.append({"seed": seed, "mineral": s.name, "sg": int(s.meta["sg_number"]),
                    "verdict": ev["assessment_verdict"], "eg_1": int(ev["assessment_eg_1"]),
                    "indistinguishable": [int(e) for e in str(ev["assessment_indistinguishable"]).split()],
                    "attempts": int(ev["assessment_attempt"]) + 1, "reasons": ev["assessment_reasons"],
                    "case": {**record, "eg": sg_to_eg(int(s.meta["sg_number"]))}})
    return out


def main(argv: list[str] | None = None) -> int:
    from ratagent.agent import AgentConfig
    from ratagent.crystallography import sg_to_eg
    from sim_beamline import MINERALS
    from training.pipeline import replayed, wilson

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--minerals", default=None, help="comma-separated (default: the whole library)")
    parser.add_argument("--time-scale", type=float, default=0.0, help="real seconds per count second")
    parser.add_argument("--instrument", choices=("lab", "synchrotron"), default="lab")
    parser.add_argument("--wavelength", type=float, default=None,
                        help="Å, for --instrument synchrotron (default 0.7293)")
    parser.add_argument("--anode", default="Cu", help="the lab tube (Cr, Fe, Co, Cu, Mo, Ag; default Cu)")
    parser.add_argument("--impurity", default=None, metavar="MINERAL",
                        help="a second phase in every other sample (a library mineral, e.g. quartz)")
    parser.add_argument("--impurity-fraction", type=float, default=0.05,
                        help="its share of the integrated intensity (default 0.05)")
    parser.add_argument("--out", default=None,
                        help="default: outputs/beamline_minerals, or outputs/beamline_minerals_synchrotron")
    args = parser.parse_args(argv)
    try:
        instrument = instrument_for(args.instrument, args.wavelength, args.anode)
    except ValueError as exc:
        parser.error(str(exc))
    impurity = None
    if args.impurity is not None:
        if args.impurity not in MINERALS:
            parser.error(f"--impurity {args.impurity!r} is not a library mineral: {', '.join(MINERALS)}")
        if not 0 < args.impurity_fraction < 1:
            parser.error(f"--impurity-fraction must be in (0, 1), got {args.impurity_fraction}")
        impurity = (args.impurity, args.impurity_fraction)
    if args.out is None:
        args.out = "outputs/beamline_minerals" + ("" if args.instrument == "lab" else "_synchrotron") + (
            "" if args.anode == "Cu" else f"_{args.anode}") + (
            "" if impurity is None else f"_{impurity[0]}{impurity[1]:g}")
    names = list(MINERALS) if args.minerals is None else [n.strip() for n in args.minerals.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cases.jsonl"
    stated = json.loads(json.dumps(dataclasses.asdict(instrument)))  # tuples as lists, as read back
    if impurity is not None:
        stated["impurity"] = list(impurity)
    record = out / "instrument.json"
    if record.is_file() and json.loads(record.read_text()) != stated:
        parser.error(f"{out} holds cases of another instrument or impurity ({record}); give another --out")
    if path.is_file() and not record.is_file() and (instrument != instrument_for("lab", None) or impurity):
        parser.error(f"{out} holds cases of an unrecorded instrument; give another --out")
    record.write_text(json.dumps(stated, indent=1) + "\n")
    cases = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        todo = [n for n in names if not any(c["seed"] == seed and c["mineral"] == n for c in cases)]
        if not todo:
            continue
        new = _run_seed(seed, todo, args.time_scale, instrument, impurity)
        with path.open("a") as f:
            f.writelines(json.dumps(c) + "\n" for c in new)
        cases += new
        print(f"seed {seed}: {sum(c['verdict'] == 'accept' for c in new)} of {len(new)} accepted")
    cases = [c for c in cases if c["mineral"] in names]
    # the trust step of today's AgentConfig on each sample's final assessment
    for c, r in zip(cases, replayed([c["case"] for c in cases], AgentConfig()), strict=True):
        c.update(verdict=r["verdict"], eg_1=(r["ranking"] or [0])[0],
                 indistinguishable=r["indistinguishable"])
    accepted = [c for c in cases if c["verdict"] == "accept"]
    right = [c for c in accepted
             if sg_to_eg(c["sg"]) in (c["eg_1"], *c["indistinguishable"])]
    figures = (("accept precision", len(right), len(accepted)), ("coverage", len(accepted), len(cases)))
    for label, k, n in figures:
        lo, hi = wilson(k, n)
        print(f"{label:17s} {k / n if n else float('nan'):6.1%} [{lo:5.1%}, {hi:5.1%}] ({k}/{n})")
    for c in accepted:
        if c not in right:
            truth = sg_to_eg(c["sg"])
            print(f"  wrong accept: {c['mineral']} seed {c['seed']}: EG {c['eg_1']} (truth EG {truth})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
