"""Faithfulness curves on the Locate page: which attribution method finds the units the answer depends on?
One line per method (held-out metric as its top-k units are zeroed) and a grey band of random same-layer
sets; the table behind the chart and the methods' overlap below it (:mod:`yfpo_core.analysis.faithfulness`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import background, widgets
from yfpo_core.analysis.faithfulness import KS, faithfulness_curves, faithfulness_figure, split_problems
from yfpo_core.models import LoadedModel
from yfpo_core.attribution.registry import METHODS as ATTRIBUTION_METHODS

NAME = "faithfulness"


def render(model: LoadedModel) -> None:
    st.divider()
    st.subheader("Which method finds the most causal units? Faithfulness curves")
    st.caption("For each method: rank the MLP neurons on some problems, zero the top k on *other* problems, and "
               "compare with random sets of the same layers. A line that falls faster than the grey band found "
               "units that matter. On SmolLM2 every method and k costs minutes; start with a few methods.")
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    methods = c1.multiselect("Methods", ATTRIBUTION_METHODS, default=["grad_x_act", "activation"],
                             key="faith_methods")
    n_locate = int(c2.number_input("Locate on", min_value=1, max_value=500, value=10, key="faith_locate"))
    n_heldout = int(c3.number_input("Held out", min_value=1, max_value=500, value=10, key="faith_heldout"))
    n_random = int(c4.number_input("Random sets", min_value=1, max_value=20, value=3, key="faith_random"))
    ks = st.multiselect("k (units zeroed)", KS, default=list(KS), key="faith_ks")
    source = widgets.default_source(model)
    key = (model.fingerprint, tuple(methods), n_locate, n_heldout, n_random, tuple(ks))
    if st.button("Run faithfulness curves", key="faith_run", disabled=not (methods and ks)):
        problems = widgets.load_problems(source, n_locate + n_heldout)
        if problems is not None:
            def work(progress):
                locate, heldout = split_problems(problems, n_locate)
                return faithfulness_curves(model, locate, heldout, methods, ks=ks, n_random=n_random,
                                           progress=progress)

            background.start(NAME, work, label=f"Faithfulness ({len(methods)} methods)", key=key)
    job = background.show(NAME, key)
    if job is None or not job.succeeded:
        return
    report = job.result
    metric = st.radio("Metric", ["gold_logprob", "ranking_accuracy"], horizontal=True, key="faith_metric")
    st.plotly_chart(faithfulness_figure(report, metric), key="faith_chart")
    st.caption(f"{len(report.settings['heldout_ids'])} held-out problems of {source} (ranked on "
               f"{len(report.settings['locate_ids'])} others) · attribution {report.seconds['attribution']:.0f} s, "
               f"evaluation {report.seconds['evaluation']:.0f} s")
    st.dataframe(pd.DataFrame(report.rows()), hide_index=True, key="faith_table")
    st.markdown("**Overlap of the methods' top sets** (Jaccard of the top 100, Spearman of all scores)")
    st.dataframe(pd.DataFrame(report.overlap), hide_index=True, key="faith_overlap")
