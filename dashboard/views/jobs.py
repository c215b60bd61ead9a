"""Background jobs: long generations run by the CLI in their own process (``dsg_core.jobs``).

The page only starts a job and reads its row: a refresh, a closed tab or a second browser finds
the job where it is, and the dashboard never waits on it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import streamlit as st

from dsg_core.errors import DSGError
from dsg_core.jobs import Job, JobStore
from dsg_core.limits import limits

from ..state import Settings
from ..text import plain

MAX_DOWNLOAD = 64 * 2**20  # larger sets: use the path shown (the list redraws every 2 s)
CAPTION = ("What this is for: thousands of samples or many iterations, which take minutes to hours. A job runs "
           "`python -m dsg_core generate` in its own process; it keeps running if you refresh or close the page. "
           "A server runs at most {jobs} jobs at once, each up to {steps:,} samples × iterations (more is refused).")


def job_argv(settings: Settings, method: str, samples: int, out: Path, weights: str | None = None) -> list[str]:
    """The CLI command of a job, with the sidebar's settings (and the user's weights, if any)."""
    argv = ["generate", "--model", settings.model, "--method", method, "--samples", str(samples),
            "--iterations", str(settings.iters), "--seed", str(settings.seed), "--out", str(out)]
    if weights:
        argv += ["--weights", weights]
    if settings.priors:
        argv += ["--preset", "reference"]
    if method == "dsg":
        argv += ["--epsilon", str(settings.eps), "--lse-weight", str(settings.lse_w),
                 "--sci-weight", str(settings.sci_w)]
        argv += [f"--no-{part}" for part in ("sda", "lse", "sci") if not getattr(settings, part)]
    return argv


def start_form(store: JobStore, settings: Settings, weights: str | None) -> None:
    with st.form("new_job"):
        st.markdown(f"**New job** on `{settings.model}` with the sidebar's settings "
                    f"({settings.iters} iterations, seed {settings.seed})")
        method = st.selectbox("Method", ["dsg", "zeroq"], key="job_method")
        samples = st.number_input("Samples", min_value=1, max_value=100_000, value=256, step=64, key="job_samples")
        if st.form_submit_button("Start in the background"):
            out = store.root / f"set-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}-{method}.safetensors"
            job = store.start(job_argv(settings, method, int(samples), out, weights),
                              f"{method} · {settings.model} · {int(samples)} samples × {settings.iters} it")
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


def render(store: JobStore, settings: Settings, weights: str | None = None) -> None:
    lim = limits()
    st.caption(CAPTION.format(jobs=lim.jobs, steps=lim.job_steps))
    if store.notice:  # a damaged jobs.sqlite was moved aside just now
        st.warning(plain(store.notice))
    try:
        start_form(store, settings, weights)
    except DSGError as exc:
        st.error(str(exc))
    job_list(store)
