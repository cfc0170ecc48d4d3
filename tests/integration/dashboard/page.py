"""Running ``streamlit_app.py`` under Streamlit's AppTest, as a browser opening one of its tabs."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from stockpulse.config import PROJECT_ROOT

APP = str(PROJECT_ROOT / "streamlit_app.py")


def run_page(view: str | None = None) -> AppTest:
    """The page as a browser opening it, on ``?view=<view>`` when given; it must not raise."""
    at = AppTest.from_file(APP, default_timeout=120)
    if view:
        at.query_params["view"] = view
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
