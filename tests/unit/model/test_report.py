"""What ``ratagent classify`` reports: the text table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ratagent.crystallography import dag, extinction_group
from ratagent.model.calibration import Calibration
from ratagent.model.inference import Classifier
from ratagent.model.report import classify_files


@pytest.fixture
def classifier(tiny_model):
    return Classifier(tiny_model(seed=7), Calibration(temperature=0.02), "tinyreport")


def _write_xy(path, wavelength=None, seed=0):
    rng = np.random.default_rng(seed)
    tth = np.arange(5.0, 90.0, 0.02)
    inten = 10 + (
        rng.uniform(10, 1000, 15) * np.exp(-0.5 * ((tth[:, None] - rng.uniform(8, 85, 15)) / 0.05) ** 2)
    ).sum(1)
    header = f"# wavelength: {wavelength}\n" if wavelength else "# no wavelength here\n"
    path.write_text(header + "\n".join(f"{a:.3f} {b:.4f}" for a, b in zip(tth, inten, strict=True)))
    return path


def test_json_report(tmp_path, classifier):
    files = [_write_xy(tmp_path / "a.xy", 1.5406), _write_xy(tmp_path / "b.xy", 1.5406, seed=1)]
    out = json.loads(classify_files(files, top=3, as_json=True, classifier=classifier))
    assert [o["source"] for o in out] == [str(f) for f in files]
    for o in out:
        assert o["model_id"] == "tinyreport"
        assert [r["rank"] for r in o["top"]] == [1, 2, 3]
        probs = [r["probability"] for r in o["top"]]
        assert probs == sorted(probs, reverse=True)
        best = o["top"][0]["eg"]
        assert o["top"][0]["symbol"] == extinction_group(best).symbol
        assert o["top"][0]["crystal_system"] == extinction_group(best).crystal_system
        assert [n["eg"] for n in o["neighbours_of_top"]] == dag.neighbours(best)


def test_text_report_and_wavelength_override(tmp_path, classifier):
    f = _write_xy(tmp_path / "nowl.xy")
    with pytest.raises(ValueError, match="wavelength"):
        classify_files([f], classifier=classifier)
    text = classify_files([f], wavelength=1.5406, top=4, classifier=classifier)
    assert "λ = 1.5406 Å" in text and "model tinyreport" in text
    assert "DAG neighbours of EG" in text
    assert len([ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]) == 4
    # a tube named by the caller gives its Kα1, and the report says which radiation it assumed
    text = classify_files([f], radiation="Mo", classifier=classifier)
    assert "λ = 0.709317 Å, radiation Mo Kα1/Kα2 (given)" in text


def test_plots_one_per_file(tmp_path, classifier):
    files = [_write_xy(tmp_path / "a.xy", 1.5406), _write_xy(tmp_path / "b.xy", 1.5406, seed=1)]
    out = json.loads(
        classify_files(files, as_json=True, plot_path=tmp_path / "fig.png", classifier=classifier)
    )
    assert [o["plot"] for o in out] == [str(tmp_path / "fig_a.png"), str(tmp_path / "fig_b.png")]
    for o in out:
        data = Path(o["plot"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    single = classify_files(files[:1], plot_path=tmp_path / "one.png", classifier=classifier)
    assert f"plot: {tmp_path / 'one.png'}" in single


def test_bad_arguments(tmp_path, classifier):
    with pytest.raises(ValueError, match="top"):
        classify_files([tmp_path / "x.xy"], top=0, classifier=classifier)
    with pytest.raises(ValueError, match="no pattern files"):
        classify_files([], classifier=classifier)
    with pytest.raises(FileNotFoundError):
        classify_files([tmp_path / "missing.xy"], wavelength=1.5406, classifier=classifier)
