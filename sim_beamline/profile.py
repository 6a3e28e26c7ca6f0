"""``ratagent profile create DIR``: an IPython profile of the simulated beamline.

The profile's startup file sets up what the README's beamline recipe uses: a RunEngine, an
embedded catalog in ``DIR/catalog`` subscribed to it, the live table, a detector with
quartz mounted and a sample changer, so that after ``ipython --profile-dir DIR``::

    RE(symmetry_scan(det))                                        # what is mounted
    RE(symmetry_scan(det2, samples=["calcite", "rutile"], changer=changer))
    catalog[-1]["symmetry"].read()
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["STARTUP", "create_profile", "main"]

#: The startup file, formatted with the catalog's folder.
STARTUP = '''"""ratagent on the simulated beamline (written by `ratagent profile create`)."""

from bluesky import RunEngine

from plans import LiveAssessmentFigure, LiveAssessmentTable, symmetry_scan  # noqa: F401
from ratagent.catalog import Catalog
from sim_beamline import PowderDetector, SampleChanger, mineral_sample

RE = RunEngine()
catalog = Catalog({catalog!r})
RE.subscribe(catalog.writer)
RE.subscribe(LiveAssessmentTable())
det = PowderDetector(name="det")  # one sample in the beam: det.sample = mineral_sample("...")
det.sample = mineral_sample("quartz")
changer = SampleChanger(name="changer")  # any library mineral by name
det2 = PowderDetector(name="det2", changer=changer)
print("ratagent: RE, catalog ({catalog}), det (quartz mounted), det2 + changer; "
      "RE(symmetry_scan(det)) to start")
'''


def create_profile(directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write the profile's startup file into ``directory/startup``; returns its path.

    Raises
    ------
    FileExistsError
        The startup file exists and ``overwrite`` is false.
    """
    directory = Path(directory).resolve()
    startup = directory / "startup" / "00-ratagent.py"
    if startup.exists() and not overwrite:
        raise FileExistsError(f"{startup} exists; pass --overwrite to replace it")
    startup.parent.mkdir(parents=True, exist_ok=True)
    catalog = str(directory / "catalog")
    startup.write_text(STARTUP.format(catalog=catalog), encoding="utf-8")
    return startup


def main(argv: Sequence[str] | None = None) -> int:
    """``ratagent profile create DIR [--overwrite]``."""
    parser = argparse.ArgumentParser(prog="ratagent profile",
                                     description="Create an IPython profile of the simulated beamline.")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="write DIR/startup/00-ratagent.py")
    create.add_argument("directory")
    create.add_argument("--overwrite", action="store_true", help="replace an existing startup file")
    args = parser.parse_args(argv)
    try:
        startup = create_profile(args.directory, overwrite=args.overwrite)
    except (FileExistsError, OSError) as exc:
        print(f"ratagent profile: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {startup}\nstart with: ipython --profile-dir {Path(args.directory).resolve()}")
    return 0
