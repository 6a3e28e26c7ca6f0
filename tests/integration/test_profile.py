"""``ratagent profile create DIR``: the README's beamline recipe works in IPython on it."""

import subprocess
import sys
from pathlib import Path

import pytest

from sim_beamline.profile import create_profile, main

pytestmark = pytest.mark.slow


def test_the_profile_runs_the_readme_recipe_in_ipython(tmp_path):
    pytest.importorskip("IPython", reason="IPython is not installed")
    assert main(["create", str(tmp_path / "profile")]) == 0
    code = ("(uid,) = RE(symmetry_scan(det, count_time=0.2, max_remeasure=0)); "
            "sym = catalog[-1]['symmetry'].read(); "
            "print('\\nRESULT', catalog[-1].metadata['start']['uid'] == uid, "
            "sym['assessment_sample'].values[0], int(sym['assessment_refined'].values[0]))")
    ipython = Path(sys.executable).with_name("ipython")
    profile = str(tmp_path / "profile")
    out = subprocess.run([str(ipython), "--profile-dir", profile, "--no-banner", "-c", code],
                         capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]  # after the live table
    assert result == ["RESULT True quartz 1"], out.stdout[-3000:]


def test_an_existing_profile_is_not_overwritten_unless_asked(tmp_path, capsys):
    create_profile(tmp_path)
    assert main(["create", str(tmp_path)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["create", str(tmp_path), "--overwrite"]) == 0
