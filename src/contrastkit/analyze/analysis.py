"""Compute every diagnostic of :mod:`contrastkit.metrics` for one embedding set.

Layouts:

* one set, no labels: geometry only (uniformity, spectrum, hardness with every other sample as a
  negative, PCA);
* one set with labels: also tolerance, positive/negative similarities, AUC, leave-one-out
  retrieval, kNN accuracy and a linear probe;
* two row-paired modalities ``x``/``second``: alignment, cross-modal retrieval both ways, in-batch
  top-1 accuracy, AUC and the modality-gap measures (plus the label metrics on ``x`` if labels
  are given).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit import metrics as M


@dataclass
class Analysis:
    """Metrics (JSON-ready, nested dict) and the data the report plots.

    Attributes:
        metrics: nested ``{section: {name: value}}`` of floats/ints/strings/bools.
        similarity: positive/negative similarity statistics (None without positives).
        all_pairs_hist: ``(bin_edges, counts)`` of all pair similarities (used without positives).
        spectrum: singular-value spectrum of ``x``.
        spectrum_second: spectrum of ``second`` (two-modality layout).
        hardness: ``[(tau, centres, mean_relative_weight, profile)]``.
        projection: ``(n_points, 2)`` PCA coordinates.
        projection_groups: group id per projected point.
        group_names: legend name per group id.
        plane: ``(x, y, xlabel, ylabel, title)`` of the uniformity-tolerance (or alignment-
            uniformity) point, or None.
    """

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    similarity: M.SimilarityStats | None = None
    all_pairs_hist: tuple[Tensor, Tensor] | None = None
    spectrum: M.SpectrumResult | None = None
    spectrum_second: M.SpectrumResult | None = None
    hardness: list[tuple[float, Tensor, Tensor, M.HardnessProfile]] = field(default_factory=list)
    projection: Tensor | None = None
    projection_groups: Tensor | None = None
    group_names: list[str] = field(default_factory=list)
    plane: tuple[float, float, str, str, str] | None = None


def _pca2(x: Tensor) -> Tensor:
    xc = x.double() - x.double().mean(0)
    _, _, v = torch.linalg.svd(xc, full_matrices=False)
    return xc @ v[:2].T if v.shape[0] >= 2 else torch.cat([xc @ v[:1].T, torch.zeros(len(x), 1)], 1)


@dataclass
class _Sample:
    """The inputs of one analysis and the rows the pairwise metrics use.

    Attributes:
        x, labels, second: the full inputs (spectrum and centroid distance use every row).
        xs, ys, bs: the subsample of at most ``max_samples`` rows (same rows of each).
        zs: ``xs`` L2-normalised in float64.
        gen: the seeded generator (subsampling, hardness anchors, projection points).
        seed: the seed (train/test split, modality-gap probe).
    """

    x: Tensor
    labels: Tensor | None
    second: Tensor | None
    xs: Tensor
    ys: Tensor | None
    bs: Tensor | None
    zs: Tensor
    gen: torch.Generator
    seed: int

    @property
    def ns(self) -> int:
        """Rows used by the pairwise metrics."""
        return int(self.xs.shape[0])


def analyze(
    x: Tensor,
    *,
    labels: Tensor | None = None,
    second: Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
    temperatures: Sequence[float] = (0.05, 0.1, 0.2, 0.5),
    knn_k: int = 200,
    knn_temperature: float = 0.1,
    max_samples: int = 10_000,
    hardness_samples: int = 1000,
    projection_samples: int = 3000,
    seed: int = 0,
    progress: bool = False,
) -> Analysis:
    """Run every applicable diagnostic; see the module docstring for which ones run when.

    Pairwise metrics run on at most ``max_samples`` rows (a seeded random subset, recorded in
    ``metrics["inputs"]``); the spectrum and centroid distance use every row.

    Args:
        x: embeddings ``(n, d)``.
        labels: optional class ids ``(n,)``.
        second: optional second modality ``(n, d)`` paired with ``x`` row by row.
        ks: retrieval cut-offs.
        temperatures: temperatures of the hardness profiles.
        knn_k: neighbours of the kNN classifier (capped at the training-set size).
        knn_temperature: kNN vote temperature.
        max_samples: rows used by the pairwise metrics.
        hardness_samples: anchors used by the hardness profiles.
        projection_samples: points drawn in the 2-D projection.
        seed: seed for subsampling and the train/test split.
        progress: tqdm progress on stderr.

    Returns:
        An :class:`Analysis`.

    Raises:
        ValueError: inconsistent inputs (shapes, lengths).
    """
    s = _sample(x, labels, second, max_samples, seed)
    out = Analysis()
    info: dict[str, Any] = {"n": x.shape[0], "d": x.shape[1]}
    info.update({"rows_used_for_pairwise_metrics": s.ns, "seed": seed})
    if labels is not None:
        info["num_classes"] = int(torch.unique(labels).numel())
    info["second_modality"] = second is not None
    out.metrics["inputs"] = info

    steps: list[tuple[str, Callable[[], None]]] = [("geometry", lambda: _geometry(s, out))]
    if s.ys is not None:
        steps.append(("label metrics", lambda: _label_metrics(s, out, ks, progress)))
        steps.append(("kNN + linear probe", lambda: _probes(s, out, knn_k, knn_temperature)))
    if s.bs is not None:
        steps.append(("cross-modal + gap", lambda: _cross_modal(s, out, ks, progress)))
    steps.append(("hardness profiles", lambda: _hardness(s, out, temperatures, hardness_samples)))
    steps.append(("projection", lambda: _projection(s, out, projection_samples)))

    iterator: Any = steps
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(steps, desc="analyze", unit="step")
    for name, step in iterator:
        if progress:
            iterator.set_postfix_str(name)
        step()
    return out


def _sample(
    x: Tensor, labels: Tensor | None, second: Tensor | None, max_samples: int, seed: int
) -> _Sample:
    """Check the inputs and draw the (seeded) subsample of the pairwise metrics."""
    n = x.shape[0]
    if labels is not None and labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} rows but the embeddings have {n}")
    if second is not None and second.shape != x.shape:
        raise ValueError(
            f"second modality has shape {tuple(second.shape)}, expected {tuple(x.shape)}"
        )
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:max_samples].sort().values if n > max_samples else None
    xs = x if idx is None else x[idx]
    ys = labels if labels is None or idx is None else labels[idx]
    bs = second if second is None or idx is None else second[idx]
    zs = F.normalize(xs.double(), dim=1)
    return _Sample(x, labels, second, xs, ys, bs, zs, gen, seed)


def _geometry(s: _Sample, out: Analysis) -> None:
    """Uniformity, tolerance (with labels) and the singular-value spectrum."""
    geo: dict[str, Any] = {}
    out.metrics["geometry"] = geo
    geo["uniformity"] = M.uniformity(s.xs, check_values=False)
    if s.ys is not None:
        try:
            geo["tolerance"] = M.tolerance(s.xs, s.ys, check_values=False)
        except ValueError as err:
            geo["tolerance_error"] = str(err)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.CollapseWarning)
        out.spectrum = M.spectrum(s.x, check_values=False)
        if s.second is not None:
            out.spectrum_second = M.spectrum(s.second, check_values=False)
    geo["effective_rank"] = out.spectrum.effective_rank
    geo["max_rank"] = out.spectrum.max_rank
    geo["collapsed"] = out.spectrum.collapsed
    ev = out.spectrum.explained_variance
    geo["dims_for_90pct_energy"] = int((ev < 0.9).sum()) + 1
    if out.spectrum_second is not None:
        geo["effective_rank_second"] = out.spectrum_second.effective_rank
        geo["collapsed_second"] = out.spectrum_second.collapsed


def _label_metrics(s: _Sample, out: Analysis, ks: Sequence[int], progress: bool) -> None:
    """Positive/negative similarities, AUC and leave-one-out retrieval by label."""
    assert s.ys is not None
    sec: dict[str, Any] = {}
    out.metrics["labels"] = sec
    try:
        out.similarity = M.similarity_stats(s.xs, query_labels=s.ys, check_values=False)
        sec.update({f"similarity_{k}": v for k, v in out.similarity.summary().items()})
    except ValueError as err:
        sec["similarity_error"] = str(err)
    try:
        res = M.auc(s.xs, query_labels=s.ys, skip_undefined=True, check_values=False)
        sec["auc_global"] = res.global_auc
        sec["auc_mean_query"] = res.mean_query_auc
    except ValueError as err:
        sec["auc_error"] = str(err)
    valid_ks = tuple(k for k in ks if k <= s.ns - 1)
    try:
        ret = M.retrieval_metrics(
            s.xs,
            query_labels=s.ys,
            ks=valid_ks,
            skip_queries_without_positives=True,
            check_values=False,
            progress=progress,
        )
        sec.update({f"retrieval_{k}": v for k, v in ret.as_dict().items()})
        sec["retrieval_queries_skipped"] = ret.num_skipped
    except ValueError as err:
        sec["retrieval_error"] = str(err)


def _probes(s: _Sample, out: Analysis, knn_k: int, knn_temperature: float) -> None:
    """KNN accuracy and a linear probe on a seeded train/test split."""
    assert s.ys is not None
    sec: dict[str, Any] = {}
    out.metrics["classification"] = sec
    try:
        tr, te = M.train_test_indices(s.ys, test_fraction=0.2, seed=s.seed)
    except ValueError as err:
        sec["error"] = str(err)
        return
    xs, ys = s.xs, s.ys
    sec["train_rows"], sec["test_rows"] = int(tr.numel()), int(te.numel())
    k = min(knn_k, int(tr.numel()))
    sec["knn_k"], sec["knn_temperature"] = k, knn_temperature
    sec["knn_accuracy"] = M.knn_accuracy(
        xs[tr], ys[tr], xs[te], ys[te], k=k, temperature=knn_temperature
    )
    try:
        probe = M.linear_probe(xs[tr], ys[tr], xs[te], ys[te], seed=s.seed)
        sec["linear_probe_accuracy"] = probe.accuracy
        sec["linear_probe_train_accuracy"] = probe.train_accuracy
        sec["linear_probe_converged"] = probe.converged
    except ValueError as err:
        sec["linear_probe_error"] = str(err)


def _cross_modal(s: _Sample, out: Analysis, ks: Sequence[int], progress: bool) -> None:
    """Alignment, cross-modal retrieval both ways, AUC and the modality-gap measures."""
    assert s.bs is not None and s.second is not None
    xs, bs = s.xs, s.bs
    sec: dict[str, Any] = {}
    out.metrics["cross_modal"] = sec
    sec["alignment"] = M.alignment(xs, bs, check_values=False)
    sec["top1_accuracy_x_to_second"] = M.top1_accuracy(xs, bs, check_values=False)
    sec["top1_accuracy_second_to_x"] = M.top1_accuracy(bs, xs, check_values=False)
    stats = M.similarity_stats(xs, bs, check_values=False)
    if out.similarity is None:
        out.similarity = stats
    sec.update({f"similarity_{k}": v for k, v in stats.summary().items()})
    res = M.auc(xs, bs, check_values=False)
    sec["auc_global"], sec["auc_mean_query"] = res.global_auc, res.mean_query_auc
    for name, (q, c) in {"x_to_second": (xs, bs), "second_to_x": (bs, xs)}.items():
        ret = M.retrieval_metrics(q, c, ks=ks, check_values=False, progress=progress)
        sec.update({f"retrieval_{name}_{k}": v for k, v in ret.as_dict().items()})
    gap = M.modality_gap(xs, bs, seed=s.seed, check_values=False)
    out.metrics["modality_gap"] = dict(gap.__dict__)
    out.metrics["modality_gap"]["centroid_distance_all_rows"] = M.centroid_distance(
        s.x, s.second, check_values=False
    )


def _hardness(
    s: _Sample, out: Analysis, temperatures: Sequence[float], hardness_samples: int
) -> None:
    """Hardness profiles of the negatives at each temperature (and the all-pairs histogram)."""
    h = min(hardness_samples, s.ns)
    sub = torch.randperm(s.ns, generator=s.gen)[:h].sort().values
    zs = s.zs
    if s.bs is not None:
        sims = zs[sub] @ F.normalize(s.bs[sub].double(), dim=1).T  # (h, h), diagonal = positives
        neg = ~torch.eye(h, dtype=torch.bool)
        desc = "x vs second modality, off-diagonal negatives"
    elif s.ys is not None:
        sims = zs[sub] @ zs[sub].T
        neg = s.ys[sub][:, None] != s.ys[sub][None, :]
        if not bool(neg.any(1).all()):
            neg = ~torch.eye(h, dtype=torch.bool)
            desc = "all other samples are negatives"
        else:
            desc = "different-label samples are negatives"
    else:
        sims = zs[sub] @ zs[sub].T
        neg = ~torch.eye(h, dtype=torch.bool)
        desc = "all other samples are negatives (instance discrimination)"
    sec: dict[str, Any] = {"anchors": h, "negatives": desc}
    for prof in M.temperature_sweep(sims, temperatures, negative_mask=neg, check_values=False):
        centres, weight = M.hardness_curve(prof, sims, negative_mask=neg)
        out.hardness.append((prof.temperature, centres, weight, prof))
        sec[f"tau={prof.temperature:g}_effective_negatives"] = prof.effective_negatives
        sec[f"tau={prof.temperature:g}_top1_weight"] = prof.top1_weight
        sec[f"tau={prof.temperature:g}_entropy"] = prof.entropy
    sec["num_negatives_per_anchor"] = out.hardness[0][3].num_negatives
    out.metrics["hardness"] = sec
    if out.similarity is None:
        vals = sims[neg]
        edges = torch.linspace(-1, 1, 101, dtype=torch.float64)
        counts = torch.histc(vals.double(), bins=100, min=-1, max=1)
        out.all_pairs_hist = (edges, counts)


def _projection(s: _Sample, out: Analysis, projection_samples: int) -> None:
    """The 2-D PCA projection and the point of the uniformity-tolerance/alignment plane."""
    p = min(projection_samples, s.ns)
    sub = torch.randperm(s.ns, generator=s.gen)[:p].sort().values
    if s.bs is not None:
        pts = torch.cat([s.zs[sub], F.normalize(s.bs[sub].double(), dim=1)])
        out.projection = _pca2(pts)
        out.projection_groups = torch.cat([torch.zeros(p), torch.ones(p)]).long()
        out.group_names = ["x", "second modality"]
    else:
        out.projection = _pca2(s.zs[sub])
        if s.ys is not None:
            out.projection_groups = s.ys[sub]
            out.group_names = [str(int(c)) for c in range(int(s.ys.max()) + 1)]
    geo = out.metrics["geometry"]
    if s.ys is not None and geo.get("tolerance") is not None:
        out.plane = (
            -geo["uniformity"],
            geo["tolerance"],
            "-uniformity (t=2)",
            "tolerance",
            "uniformity-tolerance (Wang & Liu)",
        )
    elif s.second is not None:
        out.plane = (
            -geo["uniformity"],
            out.metrics["cross_modal"]["alignment"],
            "-uniformity (t=2)",
            "alignment (alpha=2)",
            "alignment-uniformity (Wang & Isola)",
        )
