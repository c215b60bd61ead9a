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
