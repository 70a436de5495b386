"""Entry point: ``streamlit run app/main.py``.

Sets up the page, the shared sidebar (model picker and model status, current-set indicator) and the page
router; nothing else lives here. The model loads in a background thread (see :mod:`app.sidebar`).
``YFPO_APP_DEMO_TINY=1`` registers a tiny random demo model and makes it the default.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root; the pages import `app.*`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from yfpo_core.cpu import prefer_passive_waiting  # noqa: E402

prefer_passive_waiting()  # before anything imports torch: the server and the browser share the CPU with jobs

import streamlit as st  # noqa: E402

from app import nav, resources, sidebar, state  # noqa: E402

resources.configure_process()
st.set_page_config(page_title="YFPO Workbench", page_icon="🧮", layout="wide")
state.init_state()
model_load = sidebar.render()
try:
    for kind, text in state.pop_flash():
        getattr(st, kind)(text)
    st.navigation(nav.sections(state.get(state.START_PAGE))).run()
    sidebar.render_footer()
finally:  # also after st.stop() or st.rerun() in the page
    sidebar.start_model_load(model_load)  # on a fresh server the model loads once the first page is drawn
