"""Entry point: ``streamlit run app/main.py``.

Sets up the page, the shared sidebar (model picker) and the page router; nothing else lives here.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root; the pages import `app.*`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import sidebar, state  # noqa: E402
from app.views import problems  # noqa: E402

st.set_page_config(page_title="YFPO Workbench", page_icon="🧮", layout="wide")
state.init_state()
sidebar.render()

pages = {
    "Explore": [
        st.Page(problems.render, title="Problems", icon="📝", url_path="problems", default=True),
    ],
}
st.navigation(pages).run()
