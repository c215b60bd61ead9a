"""Start the dashboard warm: ``python -m dashboard.serve [streamlit options]`` (what ``make run`` does).

``streamlit run`` imports the app only when the first browser connects, so torch, plotly, pandas
and the engine would be imported inside the first page view: 4-5 s of CPU on 2 cores
(docs/dashboard-speed.md). Here they are imported before the server opens its port, and the default
model's real images start loading in a background thread, so the first page only draws. The app
itself is unchanged: ``streamlit run dashboard/app.py`` works too, just with a slower first page.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"


def warm() -> None:
    """Import what the app imports (the same module objects it will get from ``sys.modules``)."""
    sys.path.insert(0, str(REPO))
    import plotly.graph_objects  # noqa: F401
    import scipy.stats  # noqa: F401  (pandas' Spearman imports it on first use: 1.7 s)
    import torch  # noqa: F401

    from dashboard import charts, evidence_bundle, resources, runner, state  # noqa: F401  (warm imports)
    from dashboard.views import accuracy, byom, evidence, explore, history, jobs, learn, qat  # noqa: F401  (warm imports)
    evidence.prebuild()
    from dsg_core.models import default_model_name
    resources.prefetch(default_model_name(), None)


def main() -> None:
    warm()
    from streamlit.web import cli
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
