"""``ratagent demo``: the live loop on the simulated beamline, as a ``ratagent`` sub-command.

Registered through the ``ratagent.commands`` entry-point group (pyproject.toml), so that
the ``ratagent`` command offers it without ratagent importing this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``ratagent demo`` arguments and run :func:`sim_beamline.demo.run_demo`."""
    parser = argparse.ArgumentParser(
        prog="ratagent demo",
        description="Run symmetry_scan on the simulated beamline over several real minerals, with a live "
        "table, storing every frame and assessment into an embedded catalog.",
    )
    parser.add_argument(
        "--directory", default="ratagent-demo", help="catalog directory (default ./ratagent-demo)"
    )
    parser.add_argument("--samples", type=int, default=4, help="number of samples, 1–6 (default 4)")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    parser.add_argument(
        "--time-scale", type=float, default=0.05, help="real seconds per second of count time"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the counting noise")
    args = parser.parse_args(argv)
    from sim_beamline.demo import run_demo

    try:
        run_demo(
            args.directory,
            args.samples,
            checkpoint=args.checkpoint,
            time_scale=args.time_scale,
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"ratagent demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
