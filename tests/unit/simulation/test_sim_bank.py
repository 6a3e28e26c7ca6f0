"""Structure bank: sharded writing, resuming, reading back, the absence check, CIFs."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from ratagent.simulation import check_absences, from_cif, iter_bank, read_shard, write_bank
from ratagent.simulation.bank import shard_path, write_shard
from ratagent.simulation.reflections import ReflectionList


def test_write_read_and_check(tmp_path):
    paths = write_bank(tmp_path, 25, shard_size=10, seed=3, workers=1, progress=False)
    assert [p.name for p in paths] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    records = list(iter_bank(tmp_path))
    assert len(records) == 30
    report = check_absences(tmp_path)
    assert report.ok and report.n_structures == 30
    for r in records:
        assert np.all(r.d >= 1.0 - 1e-6) and np.all(np.diff(r.d) <= 1e-5)


def test_shards_are_deterministic_and_resumable(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_bank(a, 20, shard_size=10, seed=9, workers=1, progress=False)
    first = shard_path(a, 1).stat().st_mtime_ns
    shard_path(a, 0).unlink()  # an interrupted run lost shard 0
    write_bank(a, 20, shard_size=10, seed=9, workers=1, progress=False)
    assert shard_path(a, 1).stat().st_mtime_ns == first  # finished shard not rewritten
    write_shard(b, 0, 10, seed=9)
    for x, y in zip(read_shard(shard_path(a, 0)), read_shard(shard_path(b, 0)), strict=True):
        assert x.sg_number == y.sg_number and x.hall == y.hall
        np.testing.assert_array_equal(x.hkl, y.hkl)
        np.testing.assert_array_equal(x.f2, y.f2)
    assert not list(a.glob(".*tmp*"))


@pytest.mark.slow
def test_parallel_writing_matches_serial(tmp_path):
    write_bank(tmp_path / "p", 40, shard_size=10, seed=4, workers=2, progress=False)
    write_bank(tmp_path / "s", 40, shard_size=10, seed=4, workers=1, progress=False)
    for i in range(4):
        for x, y in zip(
            read_shard(shard_path(tmp_path / "p", i)), read_shard(shard_path(tmp_path / "s", i)), strict=True
        ):
            np.testing.assert_array_equal(x.hkl, y.hkl)


def test_check_catches_an_absent_reflection():
    # P2₁/c stores (0 1 0): absent by the 2₁ screw along b
    bad = ReflectionList(
        14,
        gemmi.find_spacegroup_by_number(14).hall,
        [5, 6, 7, 90, 100, 90],
        [[1, 0, 0], [0, 1, 0]],
        [2, 2],
        [5.0, 6.0],
        [10.0, 3.0],
        "bad",
    )
    report = check_absences([bad])
    assert not report.ok
    assert report.absent_stored == [("bad", 14, (0, 1, 0), 3.0)]
    wrong = ReflectionList(
        13,
        gemmi.find_spacegroup_by_number(14).hall,
        [5, 6, 7, 90, 100, 90],
        [[1, 0, 0]],
        [2],
        [5.0],
        [10.0],
        "wrong",
    )
    assert check_absences([wrong]).wrong_group == [("wrong", 13, 14)]


def test_from_cif_keeps_a_non_standard_setting(references, make_cif, tmp_path):
    ref = next(r for r in references if r.name == "forsterite")
    path = tmp_path / "fo.cif"
    path.write_text(make_cif(ref, b_iso=0.6))
    rec = from_cif(path, d_min=1.0)
    assert rec.sg_number == 62 and rec.name == "fo"
    assert rec.hall == gemmi.find_spacegroup_by_name("P b n m").hall
    assert check_absences([rec]).ok
    # Pbnm: 0kl with k = 2n (b glide ⟂ a), h0l with h + l = 2n (n glide ⟂ b)
    h, k, l = rec.hkl.T
    assert np.all(k[h == 0] % 2 == 0)
    assert np.all((h + l)[k == 0] % 2 == 0)


def test_bank_and_cif_errors(tmp_path):
    with pytest.raises(ValueError, match="balance"):
        write_bank(tmp_path, 10, balance="xx", progress=False)
    with pytest.raises(ValueError, match="workers"):
        write_bank(tmp_path, 10, workers=0, progress=False)
    with pytest.raises(ValueError, match="no shard"):
        list(iter_bank(tmp_path))
    with pytest.raises(FileNotFoundError):
        from_cif(tmp_path / "missing.cif")
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell_length_a 5\n")
    with pytest.raises(ValueError, match="bad"):
        from_cif(bad)
