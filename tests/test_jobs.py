"""Background jobs: a CLI command in a child process, followed through the jobs table."""

import os
import signal
import time

import pytest

from dsg_core.generation import SyntheticSet
from dsg_core.jobs import JobStore


def wait(store: JobStore, job_id: int, until, timeout: float = 180.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = store.get(job_id)
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {store.get(job_id)}\n"
                         f"{store.log_tail(store.get(job_id))}")


def test_job_reports_progress_and_result(tmp_path):
    store = JobStore(tmp_path)
    out = tmp_path / "set.safetensors"
    job = store.start(["generate", "--method", "dsg", "--samples", "8", "--iterations", "30", "--out", str(out)],
                      "8 DSG images")
    seen = wait(store, job.id, lambda j: j.status != "running")
    assert seen.status == "done", store.log_tail(seen)
    assert seen.step == seen.total == 30 and seen.stage == "generate"
    assert seen.result["samples"] == 8 and len(SyntheticSet.load(out)) == 8
    # a second store on the same folder (a refreshed page, another browser) sees the same job
    assert [j.id for j in JobStore(tmp_path).list()] == [job.id]


def test_job_can_be_cancelled(tmp_path):
    store = JobStore(tmp_path)
    job = store.start(["generate", "--samples", "8", "--iterations", "100000",
                       "--out", str(tmp_path / "x.safetensors")], "long")
    wait(store, job.id, lambda j: j.step > 0)
    store.cancel(job.id)
    done = wait(store, job.id, lambda j: j.status != "running", timeout=60)
    assert done.status == "cancelled" and "cancel" in done.message
    assert done.step < 100000


def test_bad_settings_fail_with_the_message(tmp_path):
    store = JobStore(tmp_path)
    job = store.start(["generate", "--epsilon", "2", "--out", str(tmp_path / "x.safetensors")], "bad")
    done = wait(store, job.id, lambda j: j.status != "running", timeout=60)
    assert done.status == "failed" and "epsilon" in done.message


def test_a_killed_job_is_reported_failed(tmp_path):
    store = JobStore(tmp_path)
    job = store.start(["generate", "--samples", "8", "--iterations", "100000",
                       "--out", str(tmp_path / "x.safetensors")], "to be killed")
    wait(store, job.id, lambda j: j.step > 0)
    os.killpg(job.pid, signal.SIGKILL)
    done = wait(store, job.id, lambda j: j.status != "running", timeout=30)
    assert done.status == "failed" and "without reporting" in done.message


def test_unknown_job_is_a_clear_error(tmp_path):
    from dsg_core.errors import DataError
    with pytest.raises(DataError, match="no job 7"):
        JobStore(tmp_path).get(7)


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/stat"), reason="process start times are read from /proc")
def test_a_reused_pid_is_not_taken_for_the_job(tmp_path):
    """A job whose process died while the UI was away, its pid since given to another process
    (here: this test's own), is reported failed, not running; the same pid with its own start
    time is still running."""
    from dsg_core.jobs import start_time
    store = JobStore(tmp_path)
    ids = [store._write("INSERT INTO jobs (created, updated, title, argv, pid, status, pid_start) "
                        "VALUES (0, 0, ?, '[]', ?, 'running', ?)", (title, os.getpid(), started))
           for title, started in (("reused", "1"), ("ours", start_time(os.getpid())))]
    assert store.get(ids[0]).status == "failed" and "without reporting" in store.get(ids[0]).message
    assert store.get(ids[1]).status == "running"


def test_a_jobs_table_from_before_start_times_is_migrated(tmp_path):
    import sqlite3
    con = sqlite3.connect(tmp_path / "jobs.sqlite")
    con.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, updated REAL "
                "NOT NULL, title TEXT NOT NULL, argv TEXT NOT NULL, pid INTEGER, status TEXT NOT NULL, stage TEXT "
                "NOT NULL DEFAULT '', step INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, message "
                "TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT 'null', cancel INTEGER NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO jobs (created, updated, title, argv, pid, status) "
                "VALUES (0, 0, 'old', '[]', NULL, 'done')")
    con.commit()
    con.close()
    store = JobStore(tmp_path)
    assert [j.title for j in store.list()] == ["old"]
    assert "pid_start" in {r[1] for r in store._all("PRAGMA table_info(jobs)")}


def test_job_limits_refuse_before_anything_starts(tmp_path, monkeypatch):
    """Attack: eight clicks of 100000 samples x 2000 iterations started eight ~800 MB processes."""
    from dsg_core.errors import ConfigError
    store = JobStore(tmp_path)
    big = ["generate", "--samples", "100000", "--iterations", "2000", "--out", str(tmp_path / "big.safetensors")]
    with pytest.raises(ConfigError, match="200,000,000 samples x iterations; the limit per job is 2,000,000"):
        store.start(big, "too big")
    monkeypatch.setenv("DSG_LIMIT_JOB_STEPS", "1000")
    with pytest.raises(ConfigError, match="32,000 samples"):  # the CLI's defaults count: 64 x 500
        store.start(["generate", "--out", "x"], "defaults")
    monkeypatch.setenv("DSG_LIMIT_JOB_STEPS", "10000000")
    monkeypatch.setenv("DSG_LIMIT_JOBS", "1")
    assert store.list() == []  # nothing was inserted, nothing started
    long = ["generate", "--samples", "8", "--iterations", "100000", "--out", str(tmp_path / "x.safetensors")]
    first = store.start(long, "long")
    try:
        with pytest.raises(ConfigError, match=r"1 background jobs are running.*DSG_LIMIT_JOBS=1"):
            store.start(long, "second")
        assert [j.id for j in store.list()] == [first.id]
    finally:
        store.cancel(first.id)
    wait(store, first.id, lambda j: j.status != "running", timeout=60)
    second = store.start(long[:4] + ["10"] + long[5:], "after the first ended")
    assert wait(store, second.id, lambda j: j.status != "running").status == "done"


def test_a_garbage_jobs_store_is_moved_aside(tmp_path):
    """Attack: a garbage jobs.sqlite crashed the Background jobs page."""
    (tmp_path / "jobs.sqlite").write_bytes(b"\0garbage" * 512)
    store = JobStore(tmp_path)
    assert "jobs.sqlite was damaged" in store.notice and store.list() == []
