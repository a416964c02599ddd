"""Generalized zero-shot accuracy with calibrated stacking, and the seen–unseen curve (AUSUC).

In generalized zero-shot classification every class competes, and a model trained on the seen
classes usually scores them higher, so unseen samples are almost never predicted unseen
(unseen accuracy near 0, harmonic mean near 0), which hides how well the unseen classes are
ranked among themselves. Two standard measures (Chao et al., "An Empirical Study and Analysis of
Generalized Zero-Shot Learning for Object Recognition in the Wild", ECCV 2016):

* **calibrated stacking**: subtract a constant ``γ`` from the scores of the seen classes, then
  predict the arg-max. ``γ`` must be chosen on validation data (:func:`best_calibration`) and
  then applied unchanged to the test data.
* **AUSUC**: the area under the curve of seen accuracy ``S(γ)`` against unseen accuracy
  ``U(γ)`` as ``γ`` sweeps the real line (:func:`seen_unseen_curve`): a calibration-free summary,
  at most ``S(−∞) · U(+∞)``-ish bounded by 1.

Accuracies are averaged over samples (on class-balanced splits, such as Fashion-MNIST's test and
a stratified validation split, this equals the per-class mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _split(
    scores: Tensor, labels: Tensor, seen: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per sample: gap best-seen − best-unseen, is-seen, correct among seen / among unseen."""
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be (N, K) and labels (N,), got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}"
        )
    k = scores.shape[1]
    seen_mask = torch.zeros(k, dtype=torch.bool)
    seen_ids = [int(c) for c in seen]
    if not seen_ids or any(not 0 <= c < k for c in seen_ids):
        raise ValueError(f"seen must be non-empty class ids in 0..{k - 1}, got {list(seen)}")
    seen_mask[seen_ids] = True
    if bool(seen_mask.all()):
        raise ValueError("seen covers every class: no unseen class to calibrate against")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or inf")
    s = scores.float()
    seen_cols, unseen_cols = seen_mask.nonzero().flatten(), (~seen_mask).nonzero().flatten()
    best_s, arg_s = s[:, seen_cols].max(1)
    best_u, arg_u = s[:, unseen_cols].max(1)
    is_seen = seen_mask[labels]
    return (
        best_s - best_u,
        is_seen,
        seen_cols[arg_s] == labels,
        unseen_cols[arg_u] == labels,
    )


def calibrated_accuracies(
    scores: Tensor, labels: Tensor, seen: Sequence[int], gamma: float = 0.0
) -> dict[str, float]:
    """Generalized accuracies after subtracting ``gamma`` from the seen classes' scores.

    Args:
        scores: ``(N, K)`` class scores (e.g. cosine similarities), all classes competing.
        labels: ``(N,)`` true classes.
        seen: the seen class ids.
        gamma: calibration constant (0: no calibration).

    Returns:
        ``{"seen": S, "unseen": U, "h": 2SU / (S + U)}`` (``h`` is 0 when ``S + U = 0``).

    Raises:
        ValueError: bad shapes, non-finite scores, bad ``seen``, or a split without seen or
            without unseen samples.
    """
    gap, is_seen, ok_s, ok_u = _split(scores, labels, seen)
    if not bool(is_seen.any()) or bool(is_seen.all()):
        raise ValueError("labels must contain both seen and unseen samples")
    pred_seen = gap > gamma
    s = float((pred_seen & ok_s)[is_seen].float().mean())
    u = float((~pred_seen & ok_u)[~is_seen].float().mean())
    return {"seen": s, "unseen": u, "h": 2 * s * u / (s + u) if s + u > 0 else 0.0}


def seen_unseen_curve(scores: Tensor, labels: Tensor, seen: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The seen–unseen accuracy curve ``(U, S)`` over every distinct calibration ``γ``.

    Both are ``float64 (M,)``, ``U`` increasing from 0 (``γ = −∞``: everything predicted seen) to
    the within-unseen accuracy (``γ = +∞``), ``S`` decreasing from the within-seen accuracy to 0.
    """
    gap, is_seen, ok_s, ok_u = _split(scores, labels, seen)
    n_s, n_u = int(is_seen.sum()), int((~is_seen).sum())
    if n_s == 0 or n_u == 0:
        raise ValueError("labels must contain both seen and unseen samples")
    order = gap.argsort()  # thresholds between consecutive gaps: samples flip to "unseen"
    seen_hit = (is_seen & ok_s)[order].double()
    unseen_hit = (~is_seen & ok_u)[order].double()
    zero = torch.zeros(1, dtype=torch.float64)
    # after flipping the first m sorted samples to "unseen" (m = 0..N)
    s = (seen_hit.sum() - torch.cat([zero, seen_hit.cumsum(0)])) / n_s
    u = torch.cat([zero, unseen_hit.cumsum(0)]) / n_u
    return u, s


def ausuc(scores: Tensor, labels: Tensor, seen: Sequence[int]) -> float:
    """Area under the seen–unseen curve (trapezoids over :func:`seen_unseen_curve`)."""
    u, s = seen_unseen_curve(scores, labels, seen)
    return float(torch.trapezoid(s, u))


def best_calibration(scores: Tensor, labels: Tensor, seen: Sequence[int]) -> float:
    """The ``γ`` maximising the harmonic mean on these (validation) scores.

    Candidates are the midpoints between consecutive distinct gaps best-seen − best-unseen (and
    one beyond each end), so the returned ``γ`` is exact for this data; ties go to the smallest
    ``|γ|``.
    """
    gap, _, _, _ = _split(scores, labels, seen)
    g = torch.unique(gap.double())
    cands = torch.cat([g[:1] - 1.0, (g[1:] + g[:-1]) / 2, g[-1:] + 1.0])
    best, best_h = 0.0, -1.0
    for c in sorted(cands.tolist(), key=abs):
        h = calibrated_accuracies(scores, labels, seen, c)["h"]
        if h > best_h + 1e-12:
            best, best_h = c, h
    return best
