from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.metrics import similarity_stats, tolerance, top1_accuracy


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def ref_tolerance(x: torch.Tensor, same) -> float:  # type: ignore[no-untyped-def]
    z = _unit(x.double())
    vals = [
        float(z[i] @ z[j]) for i in range(len(z)) for j in range(len(z)) if i != j and same(i, j)
    ]
    return sum(vals) / len(vals)


def test_tolerance_matches_loop(gen: torch.Generator) -> None:
    x = torch.randn(20, 5, generator=gen)
    y = torch.randint(0, 4, (20,), generator=gen)
    expected = ref_tolerance(x, lambda i, j: int(y[i]) == int(y[j]))
    assert tolerance(x, y) == pytest.approx(expected, rel=1e-6)
    # negative control: shuffled labels give another value
    assert tolerance(x, y.roll(3)) != pytest.approx(expected, rel=1e-3)


def test_tolerance_multilabel_matches_loop(gen: torch.Generator) -> None:
    x = torch.randn(15, 4, generator=gen)
    lab = (torch.rand(15, 3, generator=gen) > 0.6).long()
    lab[0] = torch.tensor([1, 0, 0])
    lab[1] = torch.tensor([1, 1, 0])
    expected = ref_tolerance(x, lambda i, j: bool((lab[i] * lab[j]).sum() > 0))
    assert tolerance(x, lab) == pytest.approx(expected, abs=1e-6)
    assert tolerance(x.double(), lab) == pytest.approx(expected, rel=1e-10)


def test_tolerance_closed_form() -> None:
    # each class is one direction: perfect tolerance 1
    x = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 2.0]] * 3)
    assert tolerance(x, torch.tensor([0, 0, 0, 1, 1, 1])) == pytest.approx(1.0)
    # within-class pairs antipodal: tolerance -1
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert tolerance(x, torch.tensor([0, 0, 1, 1])) == pytest.approx(-1.0)


def test_tolerance_errors() -> None:
    with pytest.raises(ValueError, match="no class has two samples"):
        tolerance(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        tolerance(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        tolerance(torch.randn(3, 2), torch.tensor([0, 1]))


def _ref_pos_neg(sims: np.ndarray, pos: np.ndarray, valid: np.ndarray):  # type: ignore[no-untyped-def]
    p, n = [], []
    for i in range(sims.shape[0]):
        for j in range(sims.shape[1]):
            if not valid[i, j]:
                continue
            (p if pos[i, j] else n).append(sims[i, j])
    return np.array(p), np.array(n)


def test_similarity_stats_paired(gen: torch.Generator) -> None:
    a, b = torch.randn(11, 6, generator=gen), torch.randn(11, 6, generator=gen)
    sims = (_unit(a.double()) @ _unit(b.double()).T).numpy()
    p, n = _ref_pos_neg(sims, np.eye(11, dtype=bool), np.ones((11, 11), dtype=bool))
    for cs in (1, 4, 100):
        s = similarity_stats(a, b, bins=20, chunk_size=cs)
        assert s.positive_mean == pytest.approx(p.mean(), abs=1e-6)
        assert s.positive_std == pytest.approx(p.std(), abs=1e-6)
        assert s.negative_mean == pytest.approx(n.mean(), abs=1e-6)
        assert s.negative_std == pytest.approx(n.std(), abs=1e-6)
        assert s.negative_min == pytest.approx(n.min(), abs=1e-6)
        assert s.positive_max == pytest.approx(p.max(), abs=1e-6)
        assert (s.num_positive, s.num_negative) == (11, 110)
        assert s.gap == pytest.approx(p.mean() - n.mean(), abs=1e-6)
        hist_p, _ = np.histogram(p, bins=20, range=(-1, 1))
        hist_n, _ = np.histogram(n, bins=20, range=(-1, 1))
        assert s.positive_hist.tolist() == hist_p.tolist()
        assert s.negative_hist.tolist() == hist_n.tolist()


def test_similarity_stats_leave_one_out_and_labelled(gen: torch.Generator) -> None:
    x = torch.randn(14, 5, generator=gen)
    y = torch.randint(0, 3, (14,), generator=gen)
    z = _unit(x.double())
    sims = (z @ z.T).numpy()
    same = (y[:, None] == y[None, :]).numpy()
    valid = ~np.eye(14, dtype=bool)
    p, n = _ref_pos_neg(sims, same & valid, valid)
    s = similarity_stats(x, query_labels=y, chunk_size=3)
    assert s.positive_mean == pytest.approx(p.mean(), abs=1e-6)
    assert s.negative_mean == pytest.approx(n.mean(), abs=1e-6)
    assert s.num_positive == len(p) and s.num_negative == len(n)
    # the tolerance is the leave-one-out positive mean
    assert tolerance(x, y) == pytest.approx(s.positive_mean, abs=1e-6)
    # labelled layout with explicit candidates keeps the self pairs
    s2 = similarity_stats(x, x, query_labels=y, candidate_labels=y)
    p2, _ = _ref_pos_neg(sims, same, np.ones_like(same))
    assert s2.positive_mean == pytest.approx(p2.mean(), abs=1e-6)


def test_similarity_stats_errors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="query_labels is required"):
        similarity_stats(x)
    with pytest.raises(ValueError, match="given together"):
        similarity_stats(x, x, query_labels=torch.arange(4))
    with pytest.raises(ValueError, match="same number of rows"):
        similarity_stats(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="no positive"):
        similarity_stats(x, query_labels=torch.arange(4))


def ref_top1(a: torch.Tensor, b: torch.Tensor) -> float:
    s = _unit(a.double()) @ _unit(b.double()).T
    ok = 0
    for i in range(len(a)):
        ok += all(float(s[i, i]) > float(s[i, j]) for j in range(len(a)) if j != i)
    return ok / len(a)


def test_top1_accuracy(gen: torch.Generator) -> None:
    a = torch.randn(30, 4, generator=gen)
    b = a + 0.8 * torch.randn(30, 4, generator=gen)
    expected = ref_top1(a, b)
    assert 0 < expected < 1
    assert top1_accuracy(a, b, chunk_size=7) == pytest.approx(expected)
    assert top1_accuracy(b, a) == pytest.approx(ref_top1(b, a))
    # collapsed space: every tie counts as an error
    assert top1_accuracy(torch.ones(5, 3), torch.ones(5, 3)) == 0.0
    with pytest.raises(ValueError, match="at least 2 rows"):
        top1_accuracy(torch.randn(1, 3), torch.randn(1, 3))
