"""``contrastkit analyze``: diagnose an embedding set, write a JSON and an HTML report."""

from contrastkit.analyze.analysis import Analysis, analyze
from contrastkit.analyze.io import InputError, load_embeddings, load_labels
from contrastkit.analyze.report import render_html, save_overview

__all__ = [
    "Analysis",
    "InputError",
    "analyze",
    "load_embeddings",
    "load_labels",
    "render_html",
    "save_overview",
]
