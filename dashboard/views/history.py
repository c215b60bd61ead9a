"""History: every saved run — list, reload, compare two side by side, delete — and exports."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import views as dv
from dsg_core.errors import DSGError
from dsg_core.models import get_spec
from dsg_core.runstore import Run, RunStore, set_file
from dsg_core.sources import label

from .. import charts
from ..state import plan_of_record
from ..text import plain
from .accuracy import fp32_of, summary

CAPTION = ("What to look for: how a setting changed the outcome — load two runs side by side. Every Run is "
           "saved here automatically (config, metrics, results and its synthetic sets).")


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    return pd.DataFrame([{"id": r.id, "created": dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
                          "model": r.model, "title": r.title, "seconds": r.config.get("seconds")} for r in runs])


def describe(run: Run) -> str:
    return f"#{run.id} · {run.model} · {run.title}"


def flat(run: Run) -> dict:
    """A run's plan as flat settings ('generation.epsilon': 0.9, ...), for a side-by-side diff."""
    try:
        d = plan_of_record(run.config).to_dict()
    except DSGError:
        return dict(run.config)
    g, q = d.pop("generation"), d.pop("quant")
    return {**d, **{f"generation.{k}": v for k, v in g.items()}, **{f"quant.{k}": v for k, v in q.items()}}


def compare(a: Run, b: Run) -> None:
    """Settings that differ, then each run's accuracy table and mean metrics, side by side."""
    fa, fb = flat(a), flat(b)
    keys = sorted(set(fa) | set(fb))
    diff = pd.DataFrame([{"setting": k, f"#{a.id}": str(fa.get(k)), f"#{b.id}": str(fb.get(k))}
                         for k in keys if fa.get(k) != fb.get(k)])
    st.markdown("**Settings that differ**")
    if diff.empty:
        st.write("None — the two runs used the same settings.")
    else:
        st.dataframe(diff, hide_index=True)
    for col, run in zip(st.columns(2), (a, b)):
        with col:
            st.markdown(f"**#{run.id}** — {run.title}")
            if run.results:
                st.dataframe(summary(pd.DataFrame(run.results)))
            metrics = pd.DataFrame(run.metric_rows())
            if not metrics.empty:
                st.dataframe(metrics.assign(set=metrics.source.map(label)).drop(columns=["source"])
                             .groupby("set").mean(numeric_only=True).drop(columns=["seed"]).T.style.format("{:.3f}"))


def exports(result) -> None:
    """Downloads of the run on screen: sets (.pt, PNG zip), results and metrics, figures as HTML."""
    st.markdown("**Export the run on screen**" + (f" (#{result.run_id})" if result.run_id else ""))
    stem = f"dsg_run{result.run_id or ''}"
    spec = get_spec(result.plan.model)
    cols = st.columns(4)
    for i, ((source, seed), s) in enumerate(sorted(result.sets.items(), key=lambda kv: (kv[0][1], kv[0][0]))):
        if s is None:
            continue
        name = set_file(source, seed)
        with cols[i % 4]:
            st.download_button(f"{label(source)} s{seed} .pt", s.to_pt_bytes, f"{stem}_{name}.pt",
                               "application/octet-stream", key=f"pt_{name}", on_click="ignore")
            st.download_button(f"{label(source)} s{seed} PNGs", lambda s=s: s.png_zip(spec.mean, spec.std),
                               f"{stem}_{name}_png.zip", "application/zip", key=f"zip_{name}", on_click="ignore")
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Results CSV", lambda: result.results.to_csv(index=False), f"{stem}_results.csv",
                       "text/csv", key="results_csv", on_click="ignore")
    c2.download_button("Results JSON", lambda: json.dumps({"plan": result.plan.to_dict(),
                                                           "results": result.results.to_dict("records"),
                                                           "metrics": result.metrics.to_dict("records")},
                                                          indent=2, default=float),
                       f"{stem}.json", "application/json", key="results_json", on_click="ignore")
    c3.download_button("Accuracy figure (HTML)", lambda: figure_html(charts.accuracy(result.results,
                                                                                    fp32_of(result.results))),
                       f"{stem}_accuracy.html", "text/html", key="fig_acc", on_click="ignore")
    diag = result.diagnosis
    c4.download_button("Spread per layer (CSV)",
                       lambda: dv.layer_spread_frame(diag.spreads(), diag.targets).to_csv(index=False),
                       f"{stem}_spread.csv", "text/csv", key="fig_spread", on_click="ignore")


def figure_html(fig) -> str:
    """Self-contained HTML (plotly.js embedded): it opens offline, e.g. on a projector laptop."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def confirm_delete(store: RunStore, run: Run) -> None:
    """The second step of Delete: the history is shared by every session, so say so and ask."""
    with st.container(border=True):
        st.warning(f"Delete run #{run.id} ({plain(run.title)})? The history is shared: it goes for every "
                   "session. You can undo it right after.")
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", key="history_delete_yes", type="primary"):
            st.session_state.pop("history_confirm", None)
            try:
                st.session_state["history_deleted"] = store.delete(run.id)
            except DSGError as exc:
                st.error(plain(str(exc)))
                return
            st.rerun()
        if no.button("Keep it", key="history_delete_no"):
            st.session_state.pop("history_confirm", None)
            st.rerun()


def undo_bar(store: RunStore) -> None:
    """After a delete: Undo puts the run back (same id, same files)."""
    deleted = st.session_state.get("history_deleted")
    if deleted is None:
        return
    left, right = st.columns([4, 1])
    left.info(f"Run #{deleted.id} was deleted.")
    if right.button("Undo", key="history_undo"):
        st.session_state.pop("history_deleted")
        try:
            store.restore(deleted)
        except DSGError as exc:
            st.error(plain(str(exc)))
            return
        st.rerun()


def render(result, store: RunStore, load) -> None:
    """``load(run)`` puts a stored run on screen (the app owns session state)."""
    st.caption(CAPTION)
    if result is not None:
        exports(result)
        st.divider()
    undo_bar(store)
    try:
        runs = store.list()
    except DSGError as exc:
        st.error(plain(str(exc)))
        return
    if not runs:
        st.info("No saved runs yet: every Run is saved here.")
        return
    st.dataframe(runs_frame(runs), hide_index=True, key="runs_table")
    by_id = {r.id: r for r in runs}
    ids = list(by_id)
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.selectbox("Run", ids, format_func=lambda i: describe(by_id[i]), key="history_run")
    if c2.button("Load", key="history_load", help="Show this run in every view and set the sidebar to its settings"):
        load(by_id[chosen])
    if c3.button("Delete", key="history_delete", help="Remove the run and its files (asks first)"):
        st.session_state["history_confirm"] = chosen
    if st.session_state.get("history_confirm") in by_id:
        confirm_delete(store, by_id[st.session_state["history_confirm"]])
    if len(ids) >= 2:
        st.subheader("Compare two runs")
        a, b = st.columns(2)
        first = a.selectbox("Run A", ids, format_func=lambda i: describe(by_id[i]), key="cmp_a")
        second = b.selectbox("Run B", ids, index=1, format_func=lambda i: describe(by_id[i]), key="cmp_b")
        compare(by_id[first], by_id[second])
