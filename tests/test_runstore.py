"""Run store: add/list/get/delete, sets round trip, concurrent writers, crash-safety by ordering."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from dsg_core.errors import DataError
from dsg_core.generation import SyntheticSet
from dsg_core.runstore import RunStore


def a_set(n=4):
    return SyntheticSet(torch.randn(n, 1, 8, 8), "tiny", {"method": "zeroq"}, history=[{"loss": 1.0}])


def test_add_list_get_delete(tmp_path):
    store = RunStore(tmp_path)
    rid = store.add("tiny", "first", {"eps": 0.9}, {"DSG": {"effective_rank": 3.0}}, [{"top1": 90.0}],
                    {"DSG": a_set(), "ZeroQ": a_set()})
    run = store.get(rid)
    assert run.config == {"eps": 0.9} and run.results == [{"top1": 90.0}]
    assert run.set_names() == ["DSG", "ZeroQ"]
    assert run.load_set("DSG").images.shape == (4, 1, 8, 8)
    assert [r.id for r in store.list()] == [rid] and store.list(model="other") == []
    updated = store.update(rid, results=[{"top1": 90.0}, {"top1": 50.0, "epsilon": 0.5}])
    assert len(updated.results) == 2 and updated.metrics == run.metrics
    store.delete(rid)
    assert store.list() == [] and not run.folder.exists()
    with pytest.raises(DataError):
        store.get(rid)


WRITER = textwrap.dedent("""
    import sys, torch
    from dsg_core.generation import SyntheticSet
    from dsg_core.runstore import RunStore
    store, k = RunStore(sys.argv[1]), sys.argv[2]
    for i in range(5):
        s = SyntheticSet(torch.randn(2, 1, 8, 8), "tiny", {"method": "zeroq"}, history=[{"loss": 1.0}])
        store.add("tiny", f"w{k}-{i}", {}, {}, [], {"S": s})
""")


def test_concurrent_writers(tmp_path):
    """Three processes (as three dashboard sessions or jobs are) add runs at once: none is lost.
    Plain subprocesses, not multiprocessing's spawn: that re-runs the parent's __main__, which after
    the AppTest tests is the dashboard script."""
    RunStore(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(k)], stderr=subprocess.PIPE)
             for k in range(3)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            p.kill()
    titles = sorted(r.title for r in RunStore(tmp_path).list())
    assert len(titles) == 15 and len(set(titles)) == 15


def test_killed_mid_save_loses_nothing_already_saved(tmp_path):
    store = RunStore(tmp_path)
    keep = store.add("tiny", "kept", {"a": 1}, {}, [], {"S": a_set()})
    script = textwrap.dedent(f"""
        import torch, sys
        from dsg_core.generation import SyntheticSet
        from dsg_core.runstore import RunStore
        store = RunStore({str(tmp_path)!r})
        big = SyntheticSet(torch.randn(4000, 1, 64, 64), "tiny", {{}})
        print("ready", flush=True)
        while True:
            store.add("tiny", "doomed", {{}}, {{}}, [], {{"S": big}})
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    store = RunStore(tmp_path)
    runs = store.list()
    assert keep in [r.id for r in runs]
    assert store.get(keep).load_set("S").images.shape == (4, 1, 8, 8)
    for r in runs:  # every committed row points at complete, loadable files
        for name in r.set_names():
            r.load_set(name)


def _add(store):
    return store.add("tiny", "t", {}, {}, [{"top1": 1.0}], {"DSG": a_set()})


def test_garbage_and_damaged_stores_are_moved_aside_with_a_message(tmp_path):
    """Attacks: a garbage runs.sqlite crashed every view; corruption mid-file crashed History."""
    (tmp_path / "runs.sqlite").write_bytes(b"garbage" * 1000)
    store = RunStore(tmp_path)
    assert "runs.sqlite was damaged" in store.notice and "moved aside to runs.sqlite.damaged-" in store.notice
    assert store.list() == []
    assert (tmp_path / store.notice.split("moved aside to ")[1].split()[0]).read_bytes()[:7] == b"garbage"
    for _ in range(30):
        _add(store)
    data = bytearray((tmp_path / "runs.sqlite").read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b"\xff" * 4096  # corrupt a page in the middle
    (tmp_path / "runs.sqlite").write_bytes(bytes(data))
    for p in tmp_path.glob("runs.sqlite-*"):
        p.unlink()
    again = RunStore(tmp_path)
    assert "damaged" in again.notice and again.list() == []
    assert _add(again) == 1


def test_a_locked_store_never_loses_a_finished_run(tmp_path):
    """Attack: with another process holding BEGIN EXCLUSIVE on runs.sqlite, a finished Run was neither
    shown nor saved and its set folder was left behind."""
    import sqlite3
    store = RunStore(tmp_path, timeout=0.2)
    holder = sqlite3.connect(tmp_path / "runs.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DataError, match="locked"):
            _add(store)
        assert list((tmp_path / "sets").iterdir()) == []  # no orphan folder
        run_id, where, note = store.add_safely("tiny", "t", {}, {}, [{"top1": 1.0}], {"DSG": a_set()}, wait_s=0.01)
    finally:
        holder.rollback()
        holder.close()
    assert where is not store and where.root.parent == tmp_path / "recovered"
    assert "saved as run #1 in a new store, recovered/" in note and "runs.sqlite" in note
    assert where.get(run_id).load_set("DSG").images.shape == (4, 1, 8, 8)


def test_a_runs_folder_deleted_mid_run_is_started_again(tmp_path):
    """Attack: deleting the runs folder mid-run lost the result ("no such table")."""
    import shutil
    store = RunStore(tmp_path / "runs")
    shutil.rmtree(tmp_path / "runs")
    run_id = _add(store)
    assert store.get(run_id).set_names() == ["DSG"]


def test_delete_can_be_undone(tmp_path):
    store = RunStore(tmp_path)
    first, second = _add(store), _add(store)
    run = store.delete(first)
    assert [r.id for r in store.list()] == [second] and not run.folder.exists()
    back = store.restore(run)
    assert back.id == first and back.load_set("DSG").images.shape == (4, 1, 8, 8)
    assert [r.id for r in store.list()] == [second, first]
