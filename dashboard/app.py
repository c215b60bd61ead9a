"""DSG Lab dashboard — entry point: ``streamlit run dashboard/app.py``.

Pages (``st.navigation``): the committed Evidence first, then the views of a live run. The sidebar
collects settings (mirrored in the URL); the Run button hands ``Settings.to_plan()`` to the engine's
``run`` in a background job with live progress. A finished run stays in session state and in the
URL (``?run=ID``), so a link reopens it from the history without recomputing; a setting changed
after a run marks the views stale. Every error a user can cause is shown as ``st.error``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run` puts only dashboard/ on the path

import streamlit as st

st.set_page_config(page_title="DSG Lab", page_icon="🧪", layout="wide")

from dashboard import resources, state, style, vega
from dashboard.runner import Job, reopen_run, run_job
from dashboard.text import code, plain
from dashboard.views import accuracy, byom, evidence, explore, history, jobs, learn, qat
from dsg_core.errors import DSGError
from dsg_core.jobs import JobStore
from dsg_core.runstore import RunStore


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


FINAL_STEPS = 0.8  # share of a job's steps after which the live panel waits on the job between ticks


@st.fragment(run_every=4.0)
def live_panel() -> None:
    """Redrawn every 4 s while the job runs; hands over to a full rerun when it ends. Its loss chart is
    a light Vega-Lite one: building Plotly subplots every tick took a third of the cores from the run."""
    job = st.session_state.get("job")
    if job is not None and job.running and job.tracker.overall >= FINAL_STEPS:
        job.thread.join(timeout=3.0)  # hand over the moment the run ends, not up to a tick later
    if job is None or not job.running:
        st.rerun()
    t = job.tracker
    elapsed = time.time() - t.started
    st.progress(t.overall, text=f"{t.overall:.0%} · {t.done} of {len(t.stages)} steps done · {elapsed:.0f} s — "
                                f"{' · '.join(t.active[:3]) or 'starting'}")
    st.button("Cancel", key="cancel", on_click=job.cancel, help="Stop the run at its next step; nothing is saved")
    curves = {k: list(v) for k, v in list(t.curves.items()) if v}
    if curves:
        st.vega_lite_chart(vega.live_losses(curves), vega.LIVE_LOSS_SPEC, key="live_loss")


def finish(job: Job) -> None:
    """Move a finished job's result (or its error) into the session, once."""
    st.session_state.pop("job")
    if job.status == "done" and job.kind.startswith("ablation"):
        st.session_state[job.kind] = job.result
        st.session_state["notice"] = ("success", "The small multiples are on the Accuracy page.")
    elif job.status == "done" and job.result.saved_note:  # saved elsewhere, or not at all: say so
        show_result(job.result)
        st.session_state["notice"] = ("warning", f"The run finished in {job.result.seconds:.0f} s, but "
                                                 f"{job.result.saved_note}.")
    elif job.status == "done":
        show_result(job.result)
        st.session_state["notice"] = ("success", f"Run #{job.result.run_id} finished in {job.result.seconds:.0f} s "
                                                 "and was saved to the history.")
    elif job.status == "cancelled":
        st.session_state["notice"] = ("warning", "Run cancelled: nothing was saved; the previous results stay.")
    else:
        st.session_state["notice"] = ("error", job.error)


def show_result(result) -> None:
    """Put a run on screen and in the link (``?run=ID`` reopens it)."""
    st.session_state["result"] = result
    for kind in ("ablation-epsilon", "ablation-components"):
        st.session_state.pop(kind, None)
    if result.run_id is not None:
        st.query_params["run"] = str(result.run_id)


def show_notice() -> None:
    kind, text = st.session_state.get("notice", (None, None))
    if kind:
        getattr(st, kind)(text)


def load_run(record, set_sidebar: bool = True) -> None:
    """Put a stored run on screen (History's Load button, or a link's ``run=``) and, by default,
    set the sidebar to its settings."""
    ctx = load_context(record.model, weights=record.config.get("weights"), test_dir=record.config.get("test_dir"))
    if ctx is None:
        return
    try:
        result = reopen_run(record, ctx)
    except DSGError as exc:
        st.error(f"cannot reopen run #{record.id}: {exc}")
        return
    show_result(result)
    if set_sidebar:
        state.apply_settings(state.Settings.from_plan(result.plan))
    st.session_state["notice"] = ("info", f"Showing saved run #{record.id}: {record.title}")
    st.rerun()


def follow_link(store: RunStore) -> None:
    """A link with ``run=ID`` reopens that run, once per id, before the sidebar is drawn."""
    wanted = st.query_params.get("run")
    shown = st.session_state.get("result")
    if not wanted or (shown is not None and str(shown.run_id) == wanted) or st.session_state.get("followed") == wanted:
        return
    st.session_state["followed"] = wanted
    try:
        record = store.get(int(wanted))
    except (ValueError, DSGError):
        st.session_state["notice"] = ("warning", f"The link's {code('run=' + wanted[:20])} is not a saved run.")
        return
    load_run(record)


def stale_banner(settings: state.Settings, result, ctx) -> None:
    """Say at once when the view no longer shows the sidebar's settings."""
    if result is None or ctx is None:
        return
    notes = state.stale_notes(settings.to_plan(ctx.weights, ctx.test_dir), result.plan)
    if notes:
        st.warning("**Stale view:** " + "; ".join(notes) + ". Press **Run** to update, or load the run's "
                   "settings back.", icon=":material/update:")
        st.button("Put the run's settings back in the sidebar", key="restore_settings",
                  on_click=state.apply_settings, args=(state.Settings.from_plan(result.plan),))


def main() -> None:
    store = RunStore(state.runs_dir())
    follow_link(store)
    run_box = st.sidebar.container()
    present = st.sidebar.toggle("Presentation mode", False, key="present", bind="query-params",
                                help="Larger text and images, for a projector.")
    style.apply(present)
    settings = state.sidebar()
    custom = custom_weights(settings.model)
    ctx = load_context(settings.model, **custom)
    job = st.session_state.get("job")
    if job is not None and not job.running:
        finish(job)
        job = None
    running = job is not None
    if run_box.button("Run", type="primary", disabled=ctx is None or running, key="run", width="stretch",
                      help="Generate DSG, ZeroQ and Gaussian sets for every seed, diagnose them, quantize with "
                           "each and with real images, evaluate; saved to History."):
        start(run_job(settings.to_plan(ctx.weights, ctx.test_dir), ctx))
        st.rerun()  # redraw the whole page: Run disabled, live panel shown
    plan = settings.to_plan()
    run_box.caption(f"{len(plan.generated)} sets to generate ({len(plan.seeds)} seed(s) × DSG, ZeroQ, Gaussian) of "
                    f"{plan.generation.samples} images × {plan.generation.iterations} steps, plus real images; about a "
                    "minute on 2 cores at the defaults.")
    if custom:
        run_box.caption(f"Using your model: {code(st.session_state['custom']['label'])}")
    result = st.session_state.get("result")
    if result is not None and result.run_id is not None and st.query_params.get("run") != str(result.run_id):
        st.query_params["run"] = str(result.run_id)  # the link names the run on screen, on every page
    if store.notice:  # a damaged runs.sqlite was moved aside just now
        st.warning(plain(store.notice))
    # icons are Material symbols: they render without emoji fonts; the default page is the bare address
    pages = {
        "evidence": st.Page(lambda: evidence.render(present, pages["more"]), title="Evidence",
                            icon=":material/insights:", url_path="evidence", default=True),
        "more": st.Page(lambda: evidence.render_parts(present), title="More evidence", icon=":material/tune:",
                          url_path="more"),
        "explore": st.Page(lambda: explore.render(st.session_state.get("result"), present), title="Explore a run",
                           icon=":material/biotech:", url_path="explore"),
        "accuracy": st.Page(lambda: accuracy.render(st.session_state.get("result"), ctx, store, running, start),
                            title="Accuracy", icon=":material/target:", url_path="accuracy"),
        "qat": st.Page(lambda: qat.render(ctx, settings), title="Generator + QAT", icon=":material/model_training:",
                       url_path="qat"),
        "learn": st.Page(lambda: learn.render(settings, pages), title="Learn", icon=":material/school:",
                         url_path="learn"),
        "your-model": st.Page(lambda: byom.render(state.model_names()), title="Your model",
                              icon=":material/upload_file:", url_path="your-model"),
        "history": st.Page(lambda: history_and_jobs(store, settings, ctx), title="History & jobs",
                           icon=":material/history:", url_path="history"),
    }
    page = st.navigation({"What the measurements show": [pages["evidence"], pages["more"]],
                          "Your run": [pages["explore"], pages["accuracy"], pages["qat"]],
                          "More": [pages["learn"], pages["your-model"], pages["history"]]})
    st.title(f"DSG Lab · {page.title}")
    if running:
        live_panel()
    show_notice()
    if page not in (pages["evidence"], pages["more"], pages["learn"], pages["your-model"]):
        stale_banner(settings, result, ctx)
    page.run()


def history_and_jobs(store: RunStore, settings: state.Settings, ctx) -> None:
    runs_tab, jobs_tab = st.tabs(["History", "Background jobs"])
    with runs_tab:
        history.render(st.session_state.get("result"), store, load_run)
    with jobs_tab:
        plan = settings.to_plan(ctx.weights if ctx else None, ctx.test_dir if ctx else None)
        jobs.render(JobStore(state.runs_dir() / "jobs"), plan)


main()
