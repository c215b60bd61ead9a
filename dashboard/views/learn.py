"""Learn: the method next to the controls it governs — overview, then detail, then the formula."""

from __future__ import annotations

import streamlit as st

from ..state import Settings

CAPTION = ("Each idea, its formula, the sidebar control that switches it (with its current value), and a link to "
           "the view that shows it.")

OVERVIEW = """
**The problem.** To quantize a trained network without its training data, we *synthesize* calibration
images from the network itself: optimize random images until the statistics of their features match the
running mean and variance stored in every BatchNorm (BN) layer (ZeroQ).

**The catch.** Data that matches BN statistics *exactly* is **homogenized**: at the distribution level,
every channel's statistics sit on the BN point while real data scatters around it; at the sample level,
all samples optimize the same objective and look alike. The paper argues that homogenized data gives poor
activation ranges, so low-bit accuracy drops. Measured here, most of DSG's lead over ZeroQ came from pixels
outside the valid input range rather than from diversity (the Evidence page shows where a lead survives).

**DSG's fix** (Diverse Sample Generation) has three parts, each a switch in the sidebar:
**SDA** loosens the match, **LSE** gives each sample its own objective, **SCI** decorrelates the batch.
"""

BN_LOSS = (r"\mathcal{L}_{BN} = \sum_{i=1}^{N} \lVert \tilde\mu_i - \mu_i \rVert_2^2 + "
           r"\lVert \tilde\sigma_i - \sigma_i \rVert_2^2")
SDA = (r"\mathcal{L}_{SDA} = \sum_{i=1}^{N} \lVert \max(|\tilde\mu_i - \mu_i| - \delta_i,\, 0) \rVert_2^2 + "
       r"\lVert \max(|\tilde\sigma_i - \sigma_i| - \gamma_i,\, 0) \rVert_2^2")
MARGINS = (r"\delta_i = Q_\epsilon\big(|\mu^{g}_i - \mu_i|\big), \quad "
           r"\gamma_i = Q_\epsilon\big(|\sigma^{g}_i - \sigma_i|\big), \quad x^{g} \sim \mathcal{N}(0, 1)")
LSE = (r"\mathcal{L}_{DSG} = \frac{1}{B} \sum_{i=1}^{N} \sum_{j=1}^{B} X_{ij}\, L_{ij}, \qquad "
       r"X = \mathbf{1}\mathbf{1}^\top + (w - 1)\, I_{\,i = j \bmod N}")
SCI = (r"S = \hat{Z}\hat{Z}^\top,\ \hat z_j = \frac{z_j}{\lVert z_j \rVert} \\ "
       r"\mathcal{L}_{SCI} = \frac{1}{N}\, \mathrm{MSE}\big(\lambda(S),\ \lambda(S^{g})\big)")
QUANT = (r"q(x) = \mathrm{clamp}\Big(\big\lfloor \tfrac{x}{s} \big\rceil + z,\ 0,\ 2^{b} - 1\Big), \quad "
         r"s = \frac{\max - \min}{2^{b} - 1}")


PAGES: dict = {}


def section(title: str, overview: str, detail: str, formula: str, control: str, page: str | None = None,
            link: str = "") -> None:
    """One idea: what it does, how, its formula (always visible), the control, and where to see it."""
    st.subheader(title)
    left, right = st.columns([3, 2])
    with left:
        st.markdown(overview)
        st.markdown(detail)
        st.latex(formula)
    with right:
        st.info(control)
        if page in PAGES:
            st.page_link(PAGES[page], label=link, icon=":material/arrow_forward:")


def render(settings: Settings, pages: dict | None = None) -> None:
    """``pages``: url path -> the app's page, for the links from each idea to the view showing it."""
    global PAGES
    PAGES = pages or {}
    st.caption(CAPTION)
    st.markdown(OVERVIEW)
    section("Baseline: BN-statistics matching (ZeroQ)",
            "Make each synthetic sample's per-channel feature mean and std equal the BN running statistics.",
            "Per-sample statistics are taken over H×W at the input of every BN layer; the loss sums the "
            "squared gaps over samples and channels, plus the same term on the image itself (mean 0, std 1). "
            "Adam optimizes the pixels.", BN_LOSS,
            f"**ZeroQ** is always generated for comparison, with the same samples ({settings.samples}), "
            f"iterations ({settings.iterations}) and seeds ({settings.seeds} from {settings.seed}).",
            "explore", "Explore a run → Homogenization")
    section("SDA — Slack Distribution Alignment",
            "Stop punishing small deviations: anything within a margin of the BN statistics is free, so "
            "samples keep the natural scatter real data has.",
            "The margins come from Gaussian noise: push N(0,1) images through the network once, measure how far "
            "their statistics are from the BN ones, and take the ε-quantile of those gaps per layer. ε = 0.9 is "
            "the paper's default; ε = 1 makes the band so wide that nothing is matched. "
            "**Measured here:** SDA helps at the W3A3 min/max cliff, but once the images are realistic (the "
            "reference priors, pixels in range) it is the part that costs accuracy: with AdaRound at W2A4 in 17 "
            "of 18 pairs, and without SDA the reference recipe meets more of the accuracy goal on three held-out "
            "networks, while the two tie on the embedded models (docs/recipes.md). So the `best` preset leaves SDA "
            "out.",
            SDA + r"\\" + MARGINS,
            f"Sidebar: **SDA** {'on' if settings.sda else 'off'}, **ε** = {settings.epsilon:g}.",
            "evidence", "Evidence: the slack band")
    section("LSE — Layerwise Sample Enhancement",
            "Give every sample a favourite layer whose loss counts more, so samples follow different objectives "
            "instead of one shared one.",
            "With B samples and N BN layers, sample j is assigned layer j mod N. The enhancement matrix X has "
            "weight w on the assigned (layer, sample) pair and 1 elsewhere (paper: w = 2).", LSE,
            f"Sidebar: **LSE** {'on' if settings.lse else 'off'}, weight **w** = {settings.lse_weight:g}.",
            "more", "More evidence → SDA / LSE / SCI")
    section("SCI — Sample Correlation Inhibition",
            "Penalize samples for being alike: the batch's similarity structure should look like that of "
            "independent noise.",
            "Flatten and L2-normalize every sample, form the B×B cosine-similarity matrix S, and match its "
            "eigenvalue spectrum to that of an i.i.d. Gaussian batch. This project uses the eigenvalue term only: "
            "the paper's GDPP form adds an eigenvector-alignment term whose gradient explodes for near-equal "
            "eigenvalues (docs/method.md).", SCI,
            f"Sidebar: **SCI** {'on' if settings.sci else 'off'}, weight = {settings.sci_weight:g}.",
            "explore", "Explore → Diversity metrics")
    section("Pixels in the valid range",
            "Real images are pixels in [0, 1], normalized; generated images are unbounded. Min/max calibration "
            "takes out-of-range pixels at face value, which widens activation ranges real data never produces.",
            "clip projects every image onto the valid range after each step; clamp-after clamps once at the end. "
            "On the MNIST models this control removes most of DSG's measured advantage over ZeroQ.",
            r"x \leftarrow \min\big(\max(x,\ \tfrac{0 - m}{s}),\ \tfrac{1 - m}{s}\big)",
            f"Sidebar: **Pixels** = {settings.pixel_range}.", "evidence", "Evidence: diversity or pixel range?")
    section("Quantization",
            "Weights and activations are rounded to b-bit integers; the calibration images decide the "
            "activation ranges (and, for AdaRound/BRECQ, the weight rounding).",
            "Weights: per-output-channel asymmetric min/max. Activations: per-tensor after every ReLU, range from "
            "the calibration batch (dsg-avg averages per-sample min/max). All conv and linear layers, first and "
            "last included.", QUANT,
            f"Sidebar: **W{settings.wbits}A{settings.abits}**, quantizer **{settings.quantizer}**.",
            "accuracy", "Accuracy")
