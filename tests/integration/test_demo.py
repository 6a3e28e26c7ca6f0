"""``ratagent demo``: the live loop on the simulated beamline, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ratagent.catalog import Catalog


@pytest.mark.slow
def test_the_demo_measures_a_sample_into_its_catalog_and_prints_a_readable_table(tmp_path):
    """Piped (no terminal), the table is drawn wide enough that its nine columns do not fold,
    ends its line, and the run it reports is in the catalog with one decision per frame."""
    out = subprocess.run([sys.executable, "-m", "ratagent", "demo", "--directory", str(tmp_path / "demo"),
                          "--samples", "1"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "frame" in line and "verdict" in line)
    assert "next count / s" in header and "leading EGs (posterior p)" in header  # not folded
    (run_line,) = [line for line in out.stdout.splitlines() if line.startswith("run ")]
    uid = run_line.split()[1].rstrip(":")
    with Catalog(tmp_path / "demo" / "catalog", read_only=True) as catalog:
        decisions = catalog[uid]["symmetry"].read()
    assert len(decisions["time"]) == int(run_line.split()[2]) >= 1
