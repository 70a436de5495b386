"""The page list, in one place: ``main.py`` builds the navigation from it and views switch pages with it."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class PageInfo:
    url_path: str
    title: str
    icon: str
    section: str


PAGES: tuple[PageInfo, ...] = (
    PageInfo("problems", "Problems", ":material/edit_note:", "Explore"),
    PageInfo("locate", "Locate", ":material/travel_explore:", "Explore"),
    PageInfo("unit", "Unit detail", ":material/biotech:", "Explore"),
    PageInfo("neuron-set", "Neuron set", ":material/hub:", "Explore"),
    PageInfo("search", "Search", ":material/search:", "Explore"),
    PageInfo("train", "Train", ":material/model_training:", "Train"),
    PageInfo("runs", "Runs", ":material/monitoring:", "Train"),
)


def _render(url_path: str) -> Callable[[], None]:
    """The page's ``render``, imported when the page is first shown.

    Why lazily: most views import the analysis core, which imports PyTorch and TransformerLens (seconds on a
    small CPU). Importing them here, under a spinner, lets the sidebar and navigation appear at once on a
    fresh server instead of after those imports. The Problems page, shown first, imports neither: it draws
    its problems while the model loads in the background (:mod:`app.sidebar`).
    """
    module_name = f"app.views.{url_path.replace('-', '_')}"
    title = next(p.title for p in PAGES if p.url_path == url_path)

    def run() -> None:
        st.title(title)  # drawn before the import, so a fresh server shows the page at once
        module = sys.modules.get(module_name)
        if module is None:
            with st.spinner("Starting the workbench (loading PyTorch and TransformerLens)…"):
                module = importlib.import_module(module_name)
        module.render()

    run.__name__ = f"page_{url_path.replace('-', '_')}"
    return run


def page(url_path: str, default: bool = False) -> st.Page:
    info = next(p for p in PAGES if p.url_path == url_path)
    return st.Page(_render(url_path), title=info.title, icon=info.icon, url_path=info.url_path, default=default)


def sections(default: str = "problems") -> dict[str, list[st.Page]]:
    """``{section: [pages]}`` for ``st.navigation``; ``default`` is the url path of the first page shown."""
    if default not in {p.url_path for p in PAGES}:
        default = "problems"
    out: dict[str, list[st.Page]] = {}
    for info in PAGES:
        out.setdefault(info.section, []).append(page(info.url_path, default=info.url_path == default))
    return out


def switch_to(url_path: str) -> None:
    st.switch_page(page(url_path))
