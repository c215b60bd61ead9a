"""Background jobs: long generations run by the CLI in their own process (``dsg_core.jobs``).

The page only starts a job and reads its row: a refresh, a closed tab or a second browser finds
the job where it is, and the dashboard never waits on it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import streamlit as st

from dsg_core.cli import generation_argv, plan_argv
from dsg_core.errors import DSGError
from dsg_core.experiments import Plan, title_of
from dsg_core.jobs import Job, JobStore
from dsg_core.limits import limits
from dsg_core.models import get_spec

from ..state import runs_dir
from ..text import plain

MAX_DOWNLOAD = 64 * 2**20  # larger sets: use the path shown (the list redraws every 2 s)
CAPTION = ("What this is for: thousands of samples, many iterations or a whole Run, which take minutes to hours. A "
           "job runs `python -m dsg_core generate` (or `compare --save`) in its own process with the sidebar's "
           "settings; it keeps running if you refresh or close the page. A server runs at most {jobs} jobs at once, "
           "each up to {steps:,} samples × iterations (more is refused).")


def generation_job(plan: Plan, method: str, samples: int, out: Path) -> tuple[list[str], str]:
    """(argv, title) of a long generation with the sidebar's settings (the plan's first seed)."""
    cfg = plan.source_config(method, plan.seeds[0], get_spec(plan.model).input_shape[-1]).replace(samples=samples)
    argv = ["generate", "--model", plan.model, *generation_argv(cfg), "--out", str(out)]
    argv += ["--weights", plan.weights] if plan.weights else []
    return argv, f"{method} · {plan.model} · {samples} samples × {cfg.iterations} it"


def run_job_argv(plan: Plan, runs: Path) -> tuple[list[str], str]:
    """(argv, title) of the sidebar's whole Run in the background, saved to the history."""
    return [*plan_argv(plan), "--save", str(runs), "--quiet"], f"Run · {title_of(plan)}"


def start_form(store: JobStore, plan: Plan, runs: Path) -> None:
    with st.form("new_job"):
        st.markdown(f"**New job** on `{plan.model}` with the sidebar's settings "
                    f"({plan.generation.iterations} iterations, seed {plan.seeds[0]})")
        kind = st.selectbox("What", ["generate", "run"], key="job_kind",
                            format_func={"generate": "a large synthetic set (generate)",
                                         "run": "the whole Run (saved to History when done)"}.get)
        method = st.selectbox("Method (for a set)", ["dsg", "zeroq"], key="job_method")
        samples = st.number_input("Samples (for a set)", min_value=1, max_value=100_000, value=256, step=64,
                                  key="job_samples")
        if st.form_submit_button("Start in the background"):
            out = store.root / f"set-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}-{method}.safetensors"
            argv, title = (generation_job(plan, method, int(samples), out) if kind == "generate"
                           else run_job_argv(plan, runs))
            job = store.start(argv, title)
            st.toast(f"Started job #{job.id}")


def job_row(store: JobStore, job: Job) -> None:
    with st.container(border=True):
        st.markdown(f"**#{job.id}** · {job.title} · started {dt.datetime.fromtimestamp(job.created):%H:%M:%S} · "
                    f"**{job.status}**")
        if job.status == "running":
            st.progress(job.fraction, text=f"{job.stage or 'starting'} {job.step}/{job.total or '?'}")
            if st.button("Cancel", key=f"cancel_job_{job.id}", disabled=job.cancel_requested):
                store.cancel(job.id)
                st.rerun()
        elif job.status == "done" and isinstance(job.result, dict):
            out = Path(job.result.get("out", ""))
            st.caption(f"{job.result.get('samples')} images in {job.result.get('seconds', 0):.0f} s → `{out}`")
            if out.is_file() and out.stat().st_size <= MAX_DOWNLOAD:
                st.download_button("Download the set (.safetensors)", out.read_bytes(), file_name=out.name,
                                   key=f"download_job_{job.id}")
        else:
            st.warning(plain(job.message or job.status))
        with st.expander("Log"):
            st.code(store.log_tail(job) or "(empty)")


@st.fragment(run_every=2.0)
def job_list(store: JobStore) -> None:
    """Re-read every 2 s: progress of running jobs shows without a page reload."""
    try:
        jobs = store.list()
    except DSGError as exc:  # locked past the timeout: say so, the next poll tries again
        st.error(plain(str(exc)))
        return
    if not jobs:
        st.info("No background jobs yet.")
    for job in jobs[:20]:
        job_row(store, job)


def render(store: JobStore, plan: Plan) -> None:
    lim = limits()
    st.caption(CAPTION.format(jobs=lim.jobs, steps=lim.job_steps))
    if store.notice:  # a damaged jobs.sqlite was moved aside just now
        st.warning(plain(store.notice))
    try:
        start_form(store, plan, runs_dir())
    except DSGError as exc:
        st.error(str(exc))
    job_list(store)
