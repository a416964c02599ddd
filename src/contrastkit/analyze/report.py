"""Plots (matplotlib, Agg backend) and the self-contained HTML report of an :class:`Analysis`."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from contrastkit.analyze.analysis import Analysis  # noqa: E402

PlotFn = Callable[[Axes], None]


def format_value(value: Any) -> str:
    """Format a metric value the same way in the HTML table and in tests."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def flatten(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"section.name": value}`` for every leaf of the metrics dict."""
    return {f"{sec}.{k}": v for sec, vals in metrics.items() for k, v in vals.items()}


def _plot_similarity(a: Analysis) -> PlotFn | None:
    if a.similarity is None and a.all_pairs_hist is None:
        return None

    def draw(ax: Axes) -> None:
        if a.similarity is not None:
            s = a.similarity
            edges = s.bin_edges.numpy()
            for hist, name, colour in (
                (s.negative_hist, "negatives", "tab:red"),
                (s.positive_hist, "positives", "tab:blue"),
            ):
                h = hist.double()
                dens = (h / h.sum() / (edges[1] - edges[0])).numpy()
                ax.stairs(dens, edges, fill=True, alpha=0.45, color=colour, label=name)
            ax.legend(fontsize=8)
            ax.set_title(f"positive vs negative cosine (gap {s.gap:.3f})")
        else:
            assert a.all_pairs_hist is not None
            edges_t, counts = a.all_pairs_hist
            ax.stairs(counts.numpy(), edges_t.numpy(), fill=True, alpha=0.6, color="tab:gray")
            ax.set_title("cosine similarity of all pairs (no positives given)")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("density")

    return draw


def _plot_spectrum(a: Analysis) -> PlotFn | None:
    if a.spectrum is None:
        return None

    def draw(ax: Axes) -> None:
        assert a.spectrum is not None
        for spec, name in ((a.spectrum, "x"), (a.spectrum_second, "second")):
            if spec is None:
                continue
            sv = spec.singular_values.numpy()
            sv = sv / sv[0]
            ax.semilogy(
                range(1, len(sv) + 1),
                sv.clip(1e-12),
                label=f"{name} (RankMe {spec.effective_rank:.1f})",
            )
        ax.set_xlabel("index k")
        ax.set_ylabel("sigma_k / sigma_1")
        ax.set_title("singular-value spectrum")
        ax.legend(fontsize=8)

    return draw


def _plot_plane(a: Analysis) -> PlotFn | None:
    if a.plane is None:
        return None

    def draw(ax: Axes) -> None:
        assert a.plane is not None
        x, y, xl, yl, title = a.plane
        ax.scatter([x], [y], s=80, color="tab:purple", zorder=3)
        ax.annotate(f"({x:.3f}, {y:.3f})", (x, y), textcoords="offset points", xytext=(6, 6))
        ax.set_xlim(0, 4.2)  # -uniformity(t=2) lies in [0, 4]
        if "tolerance" in yl:
            ax.set_ylim(-1.05, 1.05)  # a mean cosine
        else:
            ax.set_ylim(0, 4.2)  # alignment(alpha=2) lies in [0, 4]
        ax.grid(alpha=0.3)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title)

    return draw


def _plot_hardness(a: Analysis) -> PlotFn | None:
    if not a.hardness:
        return None

    def draw(ax: Axes) -> None:
        for tau, centres, weight, prof in a.hardness:
            ax.semilogy(
                centres.numpy(),
                weight.numpy(),
                marker=".",
                label=f"tau={tau:g} (eff. negatives {prof.effective_negatives:.0f})",
            )
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("negative similarity s_ij")
        ax.set_ylabel("relative weight (#neg x r_i)")
        ax.set_title("hardness profile r_i(s_ij) (Wang & Liu)")
        ax.legend(fontsize=7)

    return draw


def _plot_projection(a: Analysis) -> PlotFn | None:
    if a.projection is None:
        return None

    def draw(ax: Axes) -> None:
        assert a.projection is not None
        p = a.projection.numpy()
        if a.projection_groups is None:
            ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.5)
        else:
            groups = a.projection_groups.numpy()
            cmap = plt.get_cmap("tab10" if len(a.group_names) <= 10 else "tab20")
            for g in sorted(set(groups.tolist())):
                m = groups == g
                name = a.group_names[g] if g < len(a.group_names) else str(g)
                ax.scatter(p[m, 0], p[m, 1], s=3, alpha=0.6, color=cmap(g % cmap.N), label=name)
            if len(set(groups.tolist())) <= 20:
                ax.legend(fontsize=6, markerscale=3, ncol=2)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.set_title("PCA projection (normalised embeddings)")

    return draw


PLOTS: dict[str, tuple[str, Callable[[Analysis], PlotFn | None]]] = {
    "similarity_histogram": ("Positive/negative similarity histograms", _plot_similarity),
    "spectrum": ("Singular-value spectrum", _plot_spectrum),
    "uniformity_tolerance": ("Uniformity-tolerance point", _plot_plane),
    "hardness": ("Hardness profile for several temperatures", _plot_hardness),
    "projection": ("2-D projection", _plot_projection),
}


def available_plots(a: Analysis) -> dict[str, PlotFn]:
    """The plots this analysis can draw, by id."""
    out: dict[str, PlotFn] = {}
    for key, (_, make) in PLOTS.items():
        fn = make(a)
        if fn is not None:
            out[key] = fn
    return out


_HEADLINE = (
    "inputs.n",
    "inputs.d",
    "inputs.num_classes",
    "geometry.uniformity",
    "geometry.tolerance",
    "geometry.effective_rank",
    "labels.similarity_gap",
    "labels.auc_global",
    "labels.retrieval_precision@1",
    "labels.retrieval_map@r",
    "classification.knn_accuracy",
    "classification.linear_probe_accuracy",
    "cross_modal.alignment",
    "cross_modal.top1_accuracy_x_to_second",
    "modality_gap.centroid_distance",
    "modality_gap.linear_separability",
)


def _headline(a: Analysis) -> dict[str, Any]:
    flat = flatten(a.metrics)
    return {k.split(".", 1)[1]: flat[k] for k in _HEADLINE if k in flat}


def _png_base64(fn: PlotFn) -> str:
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=100)
    fn(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def save_overview(a: Analysis, path: str | Path, title: str = "") -> None:
    """Write every plot in one PNG grid (for a README).

    Args:
        a: the analysis.
        path: output PNG path.
        title: figure title.
    """
    plots = available_plots(a)
    cols = 3
    rows = max(1, math.ceil(len(plots) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.3 * rows), dpi=90, squeeze=False)
    flat = list(axes.flat)
    for ax, fn in zip(flat, plots.values(), strict=False):
        fn(ax)
    for ax in flat[len(plots) :]:
        ax.axis("off")
    if len(plots) < len(flat):  # use a free panel for the headline numbers
        lines = [f"{k}: {format_value(v)}" for k, v in _headline(a).items()]
        flat[len(plots)].text(
            0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1200px;margin:2em auto;color:#222}
h1{font-size:1.6em} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em;margin-bottom:1em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
td.v{text-align:right;font-family:monospace}
.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #eee;padding:6px} figcaption{font-size:.85em;color:#555}
.note{color:#666;font-size:.85em}
"""


def render_html(a: Analysis, title: str = "contrastkit embedding report") -> str:
    """Return a self-contained HTML page: every metric in tables and every plot as a base64 PNG.

    Args:
        a: the analysis.
        title: page title.

    Returns:
        The HTML document.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='note'>Generated by <code>contrastkit analyze</code>. Definitions and formulas: "
        "docs/diagnostics.md. Cosine similarities on L2-normalised embeddings.</p>",
        "<h2>Plots</h2><div class='figs'>",
    ]
    for key, fn in available_plots(a).items():
        caption = PLOTS[key][0]
        parts.append(
            f"<figure id='plot-{key}'><img alt='{html.escape(caption)}' "
            f"src='data:image/png;base64,{_png_base64(fn)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    for section, values in a.metrics.items():
        parts.append(
            f"<h2>{html.escape(section)}</h2><table><tr><th>metric</th><th>value</th></tr>"
        )
        for name, value in values.items():
            parts.append(
                f"<tr id='m-{html.escape(section)}.{html.escape(name)}'>"
                f"<td>{html.escape(name)}</td>"
                f"<td class='v'>{html.escape(format_value(value))}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>metrics.json</h2><details><summary>raw JSON</summary><pre>"
        + html.escape(json.dumps(a.metrics, indent=2))
        + "</pre></details></body></html>"
    )
    return "\n".join(parts)
