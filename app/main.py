"""Entry point: ``streamlit run app/main.py``.

Sets up the page, the shared sidebar (model picker and model status, current-set indicator) and the page
router; nothing else lives here. The model loads in a background thread (see :mod:`app.sidebar`).
``YFPO_APP_DEMO_TINY=1`` registers a tiny random demo model and makes it the default.

Everything runs under ``if __name__ == "__main__"``: Streamlit runs this file as ``__main__``, and a worker
process started with ``spawn`` (GSM-Symbolic generation, :mod:`yfpo_core.problems.timed_worker`) imports the
parent's main file again as ``__mp_main__``; there it must draw nothing (calling Streamlit outside a script
run logs a "missing ScriptRunContext" warning per call, thousands for one problem set) and import nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run app/main.py` puts app/ on sys.path, not the repository root; the pages import `app.*`.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    from yfpo_core.cpu import prefer_passive_waiting

    prefer_passive_waiting()  # before anything imports torch: the server and the browser share the CPU with jobs

    import streamlit as st

    from app import nav, resources, sidebar, state

    resources.configure_process()
    st.set_page_config(page_title="YFPO Workbench", page_icon="🧮", layout="wide")
    st.html(resources.REDUCED_MOTION_CSS)
    state.init_state()
    model_load = sidebar.render()
    try:
        for kind, text in state.pop_flash():
            getattr(st, kind)(text)
        st.navigation(nav.sections(state.get(state.START_PAGE))).run()
        sidebar.render_footer()
    finally:  # also after st.stop() or st.rerun() in the page
        sidebar.start_model_load(model_load)  # on a fresh server the model loads once the first page is drawn
