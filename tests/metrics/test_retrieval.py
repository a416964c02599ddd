from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from contrastkit.metrics import retrieval_metrics


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def ref_retrieval(sims: np.ndarray, rel: np.ndarray, valid: np.ndarray, ks) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Full sort per query; pessimistic ties (negative before positive)."""
    out: dict[str, list[float]] = {}
    for i in range(sims.shape[0]):
        idx = [j for j in range(sims.shape[1]) if valid[i, j]]
        # sort by score desc, then relevance asc (negatives first among ties)
        order = sorted(idx, key=lambda j: (-sims[i, j], int(rel[i, j])))
        r = [int(rel[i, j]) for j in order]
        big_r = sum(r)
        for k in ks:
            hits = sum(r[:k])
            out.setdefault(f"recall@{k}", []).append(hits / big_r)
            out.setdefault(f"precision@{k}", []).append(hits / k)
            out.setdefault(f"hit_rate@{k}", []).append(float(hits > 0))
            dcg = sum(r[p] / math.log2(p + 2) for p in range(k))
            idcg = sum(1 / math.log2(p + 2) for p in range(min(big_r, k)))
            out.setdefault(f"ndcg@{k}", []).append(dcg / idcg)
        first = r.index(1) + 1
        out.setdefault("mrr", []).append(1 / first)
        ap, seen = 0.0, 0
        for p in range(big_r):
            if r[p]:
                seen += 1
                ap += seen / (p + 1)
        out.setdefault("map@r", []).append(ap / big_r)
    return {k: float(np.mean(v)) for k, v in out.items()}


KS = (1, 3, 10)


def _check(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_paired_matches_loop(gen: torch.Generator) -> None:
    a = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    b = a + torch.randn(40, 8, generator=gen, dtype=torch.float64)
    sims = (_unit(a) @ _unit(b).T).numpy()
    expected = ref_retrieval(sims, np.eye(40, dtype=bool), np.ones((40, 40), dtype=bool), KS)
    for cs in (1, 7, 256):
        _check(retrieval_metrics(a, b, ks=KS, chunk_size=cs).as_dict(), expected)
    assert 0.1 < expected["recall@1"] < 0.9  # the case is not trivial
    # negative control
    shuffled = retrieval_metrics(a, b.roll(5, 0), ks=KS).as_dict()
    assert shuffled["mrr"] < expected["mrr"] - 0.1


def test_labelled_multi_positive_matches_loop_and_sklearn(gen: torch.Generator) -> None:
    q = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    c = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    ql = torch.randint(0, 4, (30,), generator=gen)
    cl = torch.randint(0, 4, (50,), generator=gen)
    cl[:4] = torch.arange(4)  # every class has a candidate
    sims = (_unit(q) @ _unit(c).T).numpy()
    rel = (ql[:, None] == cl[None, :]).numpy()
    expected = ref_retrieval(sims, rel, np.ones_like(rel), KS)
    res = retrieval_metrics(q, c, query_labels=ql, candidate_labels=cl, ks=KS, chunk_size=4)
    _check(res.as_dict(), expected)
    for k in KS:  # independent implementation of nDCG
        assert res.ndcg[k] == pytest.approx(ndcg_score(rel.astype(float), sims, k=k), abs=1e-12)


def test_multilabel_and_leave_one_out(gen: torch.Generator) -> None:
    x = torch.randn(24, 5, generator=gen, dtype=torch.float64)
    lab = (torch.rand(24, 3, generator=gen) > 0.5).long()
    lab[:, 0] = 1 - lab[:, 1]  # every row has a label, and every label is shared
    z = _unit(x)
    sims = (z @ z.T).numpy()
    rel = ((lab.double() @ lab.double().T) > 0).numpy()
    valid = ~np.eye(24, dtype=bool)
    expected = ref_retrieval(sims, rel & valid, valid, KS)
    _check(retrieval_metrics(x, query_labels=lab, ks=KS, chunk_size=5).as_dict(), expected)


def test_pytorch_metric_learning_parity(gen: torch.Generator) -> None:
    try:
        from pytorch_metric_learning.distances import CosineSimilarity
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import CustomKNN
    except ImportError as err:  # pragma: no cover - reported, never silent
        pytest.skip(f"pytorch-metric-learning not installed: {err}")
    x = torch.randn(120, 16, generator=gen)
    y = torch.randint(0, 6, (120,), generator=gen)
    x = x + 1.5 * torch.randn(6, 16, generator=gen)[y]  # class structure
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
    )
    pml = calc.get_accuracy(x, y, x, y, ref_includes_query=True)
    ours = retrieval_metrics(x, query_labels=y, ks=(1,))
    assert ours.precision[1] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert 0.2 < ours.map_at_r < 0.95


def test_ties_are_pessimistic() -> None:
    # collapsed candidates: every score ties, the positive ranks last among m candidates
    m = 6
    q = torch.ones(m, 2)
    res = retrieval_metrics(q, q, ks=(1, m))
    assert res.recall[1] == 0.0
    assert res.recall[m] == 1.0
    assert res.mrr == pytest.approx(1 / m)
    assert res.map_at_r == 0.0


def test_hand_computed_case() -> None:
    # one query, scores for candidates 0..4, positives {1, 3}
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1]])
    q = torch.tensor([[1.0]])
    cands = scores.T
    res = retrieval_metrics(
        q,
        cands,
        query_labels=torch.tensor([1]),
        candidate_labels=torch.tensor([0, 1, 0, 1, 0]),
        ks=(1, 2, 4),
        normalize=False,
    )
    # ranking: 0(-) 1(+) 2(-) 3(+) 4(-); ranks of positives 2 and 4
    assert res.recall == {1: 0.0, 2: 0.5, 4: 1.0}
    assert res.precision == {1: 0.0, 2: 0.5, 4: 0.5}
    assert res.mrr == 0.5
    assert res.map_at_r == pytest.approx(0.5 * (1 / 2))  # only rank 2 is within R = 2
    assert res.ndcg[4] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    )


def test_errors_and_skipping(gen: torch.Generator) -> None:
    x = torch.randn(6, 3, generator=gen)
    with pytest.raises(ValueError, match="exceeds"):
        retrieval_metrics(x, x, ks=(7,))
    with pytest.raises(ValueError, match="exceeds"):
        retrieval_metrics(x, query_labels=torch.zeros(6, dtype=torch.long), ks=(6,))
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match="query 4 has no positive"):
        retrieval_metrics(x, query_labels=y, ks=(1,))
    res = retrieval_metrics(x, query_labels=y, ks=(1,), skip_queries_without_positives=True)
    assert res.num_queries == 4 and res.num_skipped == 2
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(x, x, ks=(0,))
    with pytest.raises(ValueError, match="embedding dimension"):
        retrieval_metrics(x, torch.randn(6, 4))
