"""GuardedWriter: a catalog that fails mid-run loses no document, and says where they went."""

import numpy as np
import pytest

from ratagent.catalog import CatalogWriteError, GuardedWriter, read_spool


class _Flaky:
    """A writer that fails from its ``fail_at``-th document of the first run on."""

    def __init__(self, fail_at):
        self.fail_at, self.seen, self.count, self.run = fail_at, [], 0, None

    def __call__(self, name, doc):
        self.run = doc["uid"] if name == "start" else self.run
        self.count += 1
        if self.run == "run-1" and self.count >= self.fail_at:
            raise OSError("No space left on device")
        self.seen.append((name, doc))


def _run(uid, n_events):
    yield "start", {"uid": uid}
    yield "descriptor", {"uid": f"{uid}-d", "run_start": uid}
    for i in range(n_events):
        yield "event", {"descriptor": f"{uid}-d", "seq_num": i + 1, "data": {"frame": np.arange(3.0) + i}}
    yield "stop", {"run_start": uid, "exit_status": "success"}


def test_documents_after_a_failure_go_to_the_spool_and_the_next_run_to_the_catalog(tmp_path):
    flaky = _Flaky(fail_at=4)
    writer = GuardedWriter(flaky, tmp_path / "spool", "catalog-under-test")
    docs = list(_run("run-1", 5))
    words = r"catalog-under-test failed to store a event .*No space left"
    with pytest.raises(CatalogWriteError, match=words):
        for name, doc in docs:
            writer(name, doc)
    for name, doc in docs[4:]:  # the RunEngine goes on with the rest of the run (its stop)
        writer(name, doc)
    spooled = list(read_spool(tmp_path / "spool" / "run-1.jsonl"))
    assert [n for n, _ in spooled] == [n for n, _ in docs]
    assert spooled[3][1]["data"]["frame"] == [1.0, 2.0, 3.0]
    run_2 = list(_run("run-2", 2))
    for name, doc in run_2:
        writer(name, doc)
    assert flaky.seen == docs[:3] + run_2  # the next run goes to the catalog again
    assert not (tmp_path / "spool" / "run-2.jsonl").exists()


def test_a_spool_file_that_is_not_one_is_named(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('["start", {}]\nnot json\n')
    with pytest.raises(ValueError, match=r"x.jsonl: line 2"):
        list(read_spool(bad))
