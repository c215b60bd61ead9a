"""DSG Lab dashboard — entry point: ``streamlit run dashboard/app.py``.

The page collects settings (sidebar, mirrored in the URL), runs the pipeline in a background job
with live progress, and renders the result, which stays in session state so that changing a plot
selector redraws without recomputing. Every error a user can cause is shown as ``st.error``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run` puts only dashboard/ on the path

import streamlit as st  # noqa: E402

st.set_page_config(page_title="DSG Lab", page_icon="🧪", layout="wide")

from dsg_core.errors import DSGError  # noqa: E402
from dsg_core.models import get_spec  # noqa: E402
from dsg_core.jobs import JobStore  # noqa: E402
from dsg_core.runstore import RunStore  # noqa: E402

from dashboard import charts, resources, state  # noqa: E402
from dashboard.runner import Job, ablation_job, result_from_run, run_job  # noqa: E402
from dashboard.text import code, plain  # noqa: E402
from dashboard.views import (accuracy, byom, embedding, history, homogenization, jobs, learn, metrics,  # noqa: E402
                             qat, samples, tradeoff)

def custom_weights(model: str) -> dict:
    """The user's uploaded weights/test images when they belong to the selected architecture."""
    custom = st.session_state.get("custom")
    if custom and custom["model"] == model:
        return {"weights": custom["weights"], "test_dir": custom["test_dir"]}
    return {}


def load_context(model: str, **custom) -> resources.Context | None:
    try:
        return resources.context(model, **custom)
    except DSGError as exc:
        st.error(str(exc))
        return None


def start(job: Job) -> None:
    """Only one job per session: the Run and ablation buttons are disabled while one runs."""
    st.session_state["job"] = job.start()
    st.session_state.pop("notice", None)


@st.fragment(run_every=1.0)
def live_panel() -> None:
    """Redrawn every second while the job runs; hands over to a full rerun when it ends."""
    job = st.session_state.get("job")
    if job is None or not job.running:
        st.rerun()
    t = job.tracker
    elapsed = time.time() - t.started
    st.progress(t.overall, text=f"{t.done} of {len(t.stages)} stages done · {elapsed:.0f} s — "
                                f"{' · '.join(t.active) or 'starting'}")
    st.button("Cancel", key="cancel", on_click=job.cancel, help="Stop the run at its next step")
    if any(t.curves.values()):
        st.plotly_chart(charts.loss_curves(t.curves), key="live_loss")


def finish(job: Job) -> None:
    """Move a finished job's result (or its error) into the session, once."""
    st.session_state.pop("job")
    if job.status == "done" and job.kind == "ablation":
        result = st.session_state.get("result")
        if result is not None:
            result.ablation = job.result
        st.session_state["notice"] = ("success", "The ε ablation is in Quantized accuracy.")
    elif job.status == "done" and job.result.saved_note:  # saved elsewhere, or not at all: say so
        st.session_state["result"] = job.result
        st.session_state["notice"] = ("warning", f"The run finished in {job.result.seconds:.0f} s, but "
                                                 f"{job.result.saved_note}.")
    elif job.status == "done":
        st.session_state["result"] = job.result
        st.session_state["notice"] = ("success", f"Run #{job.result.run_id} finished in {job.result.seconds:.0f} s "
                                                 "and was saved to the history.")
    elif job.status == "cancelled":
        st.session_state["notice"] = ("warning", "Run cancelled: nothing was saved; the previous results stay.")
    else:
        st.session_state["notice"] = ("error", job.error)


def show_notice() -> None:
    kind, text = st.session_state.get("notice", (None, None))
    if kind:
        getattr(st, kind)(text)


def load_run(run) -> None:
    """Put a stored run on screen (History's Load button)."""
    ctx = load_context(run.model, weights=run.config.get("weights"), test_dir=run.config.get("test_dir"))
    if ctx is None:
        return
    try:
        st.session_state["result"] = result_from_run(run, ctx)
    except DSGError as exc:
        st.error(f"cannot reload run #{run.id}: {exc}")
        return
    st.session_state["notice"] = ("info", f"Showing saved run #{run.id}: {run.title}")
    st.rerun()


def main() -> None:
    run_box = st.sidebar.container()
    settings = state.sidebar()
    custom = custom_weights(settings.model)
    st.title("DSG Lab")
    st.caption("Data-free quantization with diverse synthetic samples: generate calibration images from the "
               "model's BatchNorm statistics (ZeroQ vs DSG), see how homogenized they are, and what that does "
               "to quantized accuracy.")
    ctx = load_context(settings.model, **custom)
    job = st.session_state.get("job")
    if job is not None and not job.running:
        finish(job)
        job = None
    running = job is not None
    if run_box.button("Run", type="primary", disabled=ctx is None or running, key="run", width="stretch",
                      help="Generate DSG, ZeroQ and Gaussian sets, diagnose them, quantize with each and "
                           "with real images, evaluate; saved to History."):
        start(run_job(settings, ctx))
        st.rerun()  # redraw the whole page: Run disabled, live panel shown
    if custom:
        run_box.caption(f"Using your weights: {code(st.session_state['custom']['label'])}")
    if running:
        live_panel()
    show_notice()
    result = st.session_state.get("result")
    store = RunStore(state.runs_dir())
    if store.notice:  # a damaged runs.sqlite was moved aside just now
        st.warning(plain(store.notice))
    spec = get_spec(result.settings.model) if result else None
    views = {
        "Samples": lambda: samples.render(result, spec),
        "Homogenization": lambda: homogenization.render(result),
        "Embedding": lambda: embedding.render(result),
        "Diversity metrics": lambda: metrics.render(result),
        "Quantized accuracy": lambda: accuracy_tab(result, ctx, running),
        "Diversity vs accuracy": lambda: tradeoff.render(result, store),
        "Generator + QAT": lambda: qat.render(ctx, settings),
        "Learn": lambda: learn.render(settings),
        "History": lambda: history.render(result, store, spec, load_run),
        "Bring your own model": lambda: byom.render(state.model_names()),
        "Background jobs": lambda: jobs.render(JobStore(state.runs_dir() / "jobs"), settings,
                                               ctx.weights if ctx else None),
    }
    # Bound to the URL, the tabs rerun the script on a switch and say which one is open: only that
    # one is drawn, so a switch or a plot selector costs one view, not eleven.
    for tab, draw in zip(st.tabs(list(views), key="view", bind="query-params"), views.values()):
        if tab.open:
            with tab:
                draw()


def accuracy_tab(result, ctx, running: bool) -> None:
    """Quantized accuracy, whose ablation button starts a job for the model on screen."""
    same_model = ctx is not None and result is not None and ctx.spec.name == result.settings.model
    if accuracy.render(result, busy=running or not same_model):
        start(ablation_job(result.settings, ctx))
        st.rerun()

main()
