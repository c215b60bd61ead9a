"""Generator + QAT: the paper's generative mode. A class-conditional generator learns to fool the
frozen FP32 model's BN statistics (plain GDFQ, or with DSG's SDA/LSE/SCI), then the quantized model
is fine-tuned on its samples with distillation from FP32 (``dsg_core.gdfq``).

The training runs as a background :class:`~dashboard.runner.Job` of this session (cancellable like a
Run); the page polls
its :class:`QATTracker` every second to draw the generator's latest samples, the loss curves and
the accuracy curve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from dsg_core.errors import DSGError
from dsg_core.gdfq import QATConfig, train_qat
from dsg_core.progress import Progress

from .. import charts
from ..runner import Job
from ..state import Settings
from .explore import to_pixels

CAPTION = ("What to look for: the accuracy curve starts at epoch 0 (PTQ on the generator's samples) and QAT "
           "lifts it toward FP32 — compare the DSG generator with plain GDFQ and with real images at the same bits "
           "and seed (docs/qat.md has the measured runs). In a few minutes on a CPU the generator's samples stay "
           "abstract blobs, not digits: what matters for QAT is the statistics they carry, not how they look.")
KEY = "qat_job"


@dataclass
class QATTracker:
    """Written by the training thread, read by the page (plain values and CPU tensors only)."""
    stage: str = "starting"
    fraction: float = 0.0
    curves: dict[str, list[float]] = field(default_factory=dict)
    accuracy: list[dict] = field(default_factory=list)
    samples: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    started: float = field(default_factory=time.time)

    def __call__(self, p: Progress) -> None:
        self.stage, self.fraction = p.stage, p.fraction
        for name in ("g_loss", "kd", "loss"):
            if name in p.parts:
                self.curves.setdefault(name, []).append(float(p.parts[name]))
        if "samples" in p.extra:
            self.samples, self.labels = p.extra["samples"], p.extra.get("labels")
        if "curve" in p.extra:
            self.accuracy = list(p.extra["curve"])


def qat_job(model, spec, cfg: QATConfig) -> Job:
    """QAT training as a background :class:`~dashboard.runner.Job` (cancel, status, errors), drawing
    with the spec it was started with even if the sidebar's model changes meanwhile."""
    job = Job("qat", [], lambda tracker, cancel: train_qat(model, spec, cfg, progress=tracker, cancel=cancel),
              tracker=QATTracker())
    job.cfg, job.spec = cfg, spec
    return job


def settings_form(settings: Settings) -> QATConfig | None:
    with st.form("qat_form"):
        c = st.columns(5)
        generator = c[0].selectbox("Data", ["dsg", "gdfq", "real"], key="qat_generator",
                                   format_func={"dsg": "DSG generator", "gdfq": "GDFQ generator",
                                                "real": "real images"}.get)
        wbits = c[1].selectbox("Weight bits", [2, 3, 4, 5, 6, 8], index=2, key="qat_wbits")
        abits = c[2].selectbox("Activation bits", [2, 3, 4, 5, 6, 8], index=2, key="qat_abits")
        epochs = c[3].number_input("QAT epochs", 1, 50, 2, key="qat_epochs")
        iters = c[4].number_input("Steps per epoch", 5, 500, 30, 5, key="qat_iters")
        st.caption(f"Seed {settings.seed} and the DSG switches (SDA ε {settings.epsilon:g}, LSE, SCI) come from the "
                   "sidebar. One generator warm-up epoch precedes QAT.")
        if not st.form_submit_button("Train", type="primary"):
            return None
    return QATConfig(wbits=wbits, abits=abits, generator=generator, epochs=int(epochs), iters_per_epoch=int(iters),
                     sda=settings.sda, lse=settings.lse, sci=settings.sci, epsilon=settings.epsilon,
                     lse_weight=settings.lse_weight, sci_weight=settings.sci_weight, seed=settings.seed,
                     eval_samples=settings.eval_images)


def draw(tracker: QATTracker, spec, live: bool) -> None:
    left, right = st.columns(2)
    if tracker.samples is not None:
        with left:
            st.markdown("**The generator's samples** (one per class, fixed latent codes)")
            names = spec.class_names
            caps = [names[int(i)] for i in tracker.labels] if tracker.labels is not None else None
            st.image(list(to_pixels(tracker.samples, spec.mean, spec.std)), caption=caps, width=56)
    curves = {k: list(v) for k, v in list(tracker.curves.items()) if v}  # a snapshot: the thread appends
    if curves:
        with right:
            st.plotly_chart(charts.loss_curves(curves), key=f"qat_loss_{live}")
    if tracker.accuracy:
        df = pd.DataFrame(list(tracker.accuracy))
        fig = px.line(df, x="epoch", y="quant_top1", markers=True, labels={"quant_top1": "top-1 (%)"},
                      title="Quantized top-1 by QAT epoch (epoch 0 = PTQ)")
        fig.update_yaxes(range=[0, 100])  # a 0.3-point axis would make noise look like a trend
        st.plotly_chart(fig, key=f"qat_acc_{live}")


@st.fragment(run_every=1.0)
def live() -> None:
    job: Job | None = st.session_state.get(KEY)
    if job is None or not job.running:
        st.rerun()
    t = job.tracker
    st.progress(t.fraction, text=f"{t.stage} · {time.time() - t.started:.0f} s")
    st.button("Cancel training", key="qat_cancel", on_click=job.cancel)
    draw(t, job.spec, live=True)


def render(ctx, settings: Settings) -> None:
    st.caption(CAPTION)
    if ctx is None:
        st.info("Pick a model that loads to train.")
        return
    job: Job | None = st.session_state.get(KEY)
    if job is not None and job.running:
        live()
        return
    try:
        cfg = settings_form(settings)
        if cfg is not None:
            st.session_state[KEY] = qat_job(ctx.private_model(), ctx.spec, cfg.validate()).start()
            st.rerun()
    except DSGError as exc:
        st.error(str(exc))
    if job is None:
        return
    if job.status == "done":
        r = job.result
        st.success(f"{job.cfg.generator} data, W{job.cfg.wbits}A{job.cfg.abits}: FP32 {r.fp32_top1:.1f}% · PTQ "
                   f"{r.ptq_top1:.1f}% · after QAT {r.quant_top1:.1f}% ({r.seconds:.0f} s)")
    elif job.status == "cancelled":
        st.warning("Training cancelled.")
    else:
        st.error(job.error)
    draw(job.tracker, job.spec, live=False)
