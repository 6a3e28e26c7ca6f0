"""The public package: its names resolve, and importing it loads neither torch nor a model."""

from __future__ import annotations

import subprocess
import sys

import ratagent.model


def test_public_names_resolve():
    for name in ratagent.model.__all__:
        assert getattr(ratagent.model, name) is not None


def test_import_is_cheap():
    code = "import sys, ratagent.model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
