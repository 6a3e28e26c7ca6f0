"""The ``ratagent`` command line, run as a user runs it."""

import json
import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "ratagent", *args], capture_output=True, text=True, check=False
    )


def test_eg_by_space_group_json():
    out = _run("eg", "--sg", "14", "--json")
    assert out.returncode == 0, out.stderr
    (info,) = json.loads(out.stdout)
    assert info["eg"] == 4 and info["symbol"] == "P 21/b 1 1" and info["space_groups"] == [14]
    assert {2, 3} <= set(info["dag_neighbours"])


def test_bad_eg_is_a_clear_error():
    out = _run("eg", "100")
    assert out.returncode == 2
    assert "got 100" in out.stderr
