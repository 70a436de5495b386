"""The faithfulness chart on the Locate page (Streamlit AppTest, the tiny model of test_app)."""

from __future__ import annotations

from app import state
from tests.app.test_app import no_shipped_saes, run_app, runs_dir, settle, tiny_model  # noqa: F401


def test_locate_page_draws_faithfulness_curves_with_a_random_band(tiny_model):
    at = run_app("locate")
    assert not at.exception, at.exception
    at.multiselect(key="faith_ks").set_value([1, 5]).run()
    at.number_input(key="faith_locate").set_value(2).run()
    at.number_input(key="faith_heldout").set_value(3).run()
    at.number_input(key="faith_random").set_value(2).run()
    at.button(key="faith_run").click().run()
    at = settle(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    report = at.session_state[state.JOBS]["faithfulness"].result
    assert report.methods == ["grad_x_act", "activation"] and report.settings["ks"] == [1, 5]
    chart = at.get("plotly_chart")
    assert chart and any("held-out problems of toy" in c.value for c in at.caption)
    assert len(at.dataframe) >= 2
