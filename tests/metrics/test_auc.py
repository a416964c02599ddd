from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from contrastkit.metrics import auc


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def ref_mann_whitney(pos: list[float], neg: list[float]) -> float:
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


def test_paired_matches_sklearn_and_loop(gen: torch.Generator) -> None:
    a = torch.randn(25, 6, generator=gen, dtype=torch.float64)
    b = a + 1.2 * torch.randn(25, 6, generator=gen, dtype=torch.float64)
    sims = (_unit(a) @ _unit(b).T).numpy()
    eye = np.eye(25, dtype=bool)
    per = [roc_auc_score(eye[i], sims[i]) for i in range(25)]
    glob = roc_auc_score(eye.ravel(), sims.ravel())
    for cs in (1, 4, 512):
        r = auc(a, b, chunk_size=cs)
        np.testing.assert_allclose(r.per_query.numpy(), per, rtol=1e-12)
        assert r.mean_query_auc == pytest.approx(float(np.mean(per)), rel=1e-12)
        assert r.global_auc == pytest.approx(glob, rel=1e-12)
    assert r.global_auc == pytest.approx(
        ref_mann_whitney(sims[eye].tolist(), sims[~eye].tolist()), rel=1e-12
    )
    # negative control
    assert auc(a, b.roll(1, 0)).global_auc < 0.8 * r.global_auc


def test_labelled_leave_one_out_matches_sklearn(gen: torch.Generator) -> None:
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    z = _unit(x)
    sims = (z @ z.T).numpy()
    same = (y[:, None] == y[None, :]).numpy()
    keep = ~np.eye(30, dtype=bool)
    per = [roc_auc_score(same[i][keep[i]], sims[i][keep[i]]) for i in range(30)]
    glob = roc_auc_score(same[keep], sims[keep])
    r = auc(x, query_labels=y, chunk_size=7)
    np.testing.assert_allclose(r.per_query.numpy(), per, rtol=1e-12)
    assert r.global_auc == pytest.approx(glob, rel=1e-12)


def test_ties_count_half() -> None:
    # collapsed space: every score ties -> AUC exactly 0.5
    r = auc(torch.ones(6, 3), torch.ones(6, 3))
    assert r.global_auc == 0.5 and r.mean_query_auc == 0.5
    # hand case: query 0 scores positive 0.5 vs negatives {0.5, 0.0}: (0.5 + 1) / 2
    q = torch.tensor([[1.0, 0.0]])
    cands = torch.tensor([[0.5, 0.0], [0.5, 1.0], [0.0, 1.0]])
    r = auc(
        q,
        cands,
        query_labels=torch.tensor([0]),
        candidate_labels=torch.tensor([0, 1, 1]),
        normalize=False,
    )
    assert r.global_auc == pytest.approx(0.75)


def test_undefined_queries(gen: torch.Generator) -> None:
    x = torch.randn(5, 3, generator=gen)
    y = torch.tensor([0, 0, 1, 1, 2])  # query 4 has no positive
    with pytest.raises(ValueError, match="query 4 has no positive"):
        auc(x, query_labels=y)
    r = auc(x, query_labels=y, skip_undefined=True)
    assert r.num_skipped == 1 and torch.isnan(r.per_query[4])
    assert not torch.isnan(r.per_query[:4]).any()
