"""``memory_budget`` reaches the engine from every loss that takes it, and changes no result."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import contrastkit as ck
import contrastkit.engine.lse as lse

B, D, V = 12, 6, 2


def _inputs() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a": torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_(),
        "b": torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_(),
        "views": torch.randn(B, V, D, generator=g, dtype=torch.float64).requires_grad_(),
        "queue": torch.randn(20, D, generator=g, dtype=torch.float64),
        "labels": torch.randint(0, 3, (B,), generator=g),
        "log_u": torch.zeros(B, dtype=torch.float64),
        "seen": torch.zeros(B, dtype=torch.bool),
        "tau": torch.full((B,), 0.2, dtype=torch.float64),
    }


def _loss(out: object) -> Tensor:
    """The loss tensor of a result: a tensor, a SogCLRStep, or SupCon's (losses, mask)."""
    if isinstance(out, Tensor):
        return out.sum()
    if hasattr(out, "loss"):
        return out.loss.sum()
    assert isinstance(out, tuple)
    return out[0].sum()


#: name -> call with the engine options; the tiny tile forces the tiled (Function) path.
CASES: dict[str, Callable[..., object]] = {
    "info_nce": lambda x, **o: ck.info_nce(x["a"], x["b"], **o),
    "clip_loss": lambda x, **o: ck.clip_loss(x["a"], x["b"], **o),
    "nt_xent": lambda x, **o: ck.nt_xent(x["a"], x["b"], **o),
    "dcl": lambda x, **o: ck.dcl(x["a"], x["b"], **o),
    "dclw": lambda x, **o: ck.dclw(x["a"], x["b"], **o),
    "cwcl": lambda x, **o: ck.cwcl(x["a"], x["b"], weight_embeddings=x["b"].detach(), **o),
    "hard_contrastive_loss": lambda x, **o: ck.hard_contrastive_loss(x["a"], x["b"], **o),
    "hard_simple_loss": lambda x, **o: ck.hard_simple_loss(x["a"], x["b"], **o),
    "moco_loss": lambda x, **o: ck.moco_loss(x["a"], x["b"], x["queue"], **o),
    "mv_info_nce": lambda x, **o: ck.mv_info_nce(x["views"], **o),
    "mv_dhel": lambda x, **o: ck.mv_dhel(x["views"], **o),
    "supcon": lambda x, **o: ck.supcon(x["views"], x["labels"], **o),
    "supcon_per_anchor": lambda x, **o: ck.supcon_per_anchor(x["views"], x["labels"], **o),
    "sogclr_loss": lambda x, **o: ck.sogclr_loss(x["a"], x["b"], x["log_u"], x["seen"], **o),
    "isogclr_loss": lambda x, **o: ck.isogclr_loss(
        x["a"], x["b"], x["log_u"], x["seen"], x["tau"], torch.zeros_like(x["tau"]), **o
    ),
}


def test_every_loss_taking_memory_budget_is_covered():
    taking = {
        name
        for name in ck.__all__
        if callable(f := getattr(ck, name))
        and not inspect.isclass(f)
        and "memory_budget" in inspect.signature(f).parameters
    }
    assert taking == set(CASES) | {"siglip"}


def test_siglip_keeps_its_logits_within_the_budget_and_recomputes_below(monkeypatch):
    """SigLIP is not an engine log-sum-exp: its own tiled Function follows the same budget."""
    siglip_module = importlib.import_module("contrastkit.losses.siglip")  # the function shadows it
    kept: list[bool] = []
    apply = siglip_module._TiledSoftplusRows.apply

    def spy(*args: object) -> object:
        kept.append(bool(args[4]))  # (q, k, bias, tile, keep)
        return apply(*args)

    monkeypatch.setattr(siglip_module._TiledSoftplusRows, "apply", spy)
    results = {}
    for budget in (None, 0):
        x = _inputs()
        bias = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
        kept.clear()
        loss = ck.siglip(x["a"], x["b"], bias=bias, chunk_size=5, memory_budget=budget)
        grads = torch.autograd.grad(loss, [x["a"], x["b"], bias])
        results[budget] = (loss.detach(), grads, list(kept))
    assert results[None][2] == [True] and results[0][2] == [False]
    torch.testing.assert_close(results[0][0], results[None][0], rtol=1e-12, atol=1e-12)
    for g0, g1 in zip(results[0][1], results[None][1], strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("budget", [None, 0])
def test_siglip_tiled_function_matches_float64_autograd(budget):
    """Values and gradients (inputs and bias) of the tiled Function against plain autograd."""
    x = _inputs()
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    inputs = [x["a"], x["b"], bias]
    tiled = ck.siglip(x["a"], x["b"], bias=bias, chunk_size=5, memory_budget=budget)
    dense = ck.siglip(x["a"], x["b"], bias=bias)  # 12 × 12: plain autograd
    torch.testing.assert_close(tiled, dense, rtol=1e-12, atol=1e-12)
    for gt, gd in zip(
        torch.autograd.grad(tiled, inputs), torch.autograd.grad(dense, inputs), strict=True
    ):
        torch.testing.assert_close(gt, gd, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda a, b, c: ck.siglip(a, b, bias=c, chunk_size=5, memory_budget=budget), inputs
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_budget_reaches_the_engine_and_keeps_values_and_gradients(name, monkeypatch):
    kept: list[bool] = []
    apply = lse._TiledLSE.apply

    def spy(*args: object) -> object:
        kept.append(bool(args[6]))  # (a, c, pairs, rows, columns, tile, keep)
        return apply(*args)

    monkeypatch.setattr(lse._TiledLSE, "apply", spy)
    results = {}
    for budget in (None, 0):
        x = _inputs()
        kept.clear()
        loss = _loss(CASES[name](x, chunk_size=5, memory_budget=budget))
        grads = torch.autograd.grad(
            loss, [t for t in x.values() if t.requires_grad], allow_unused=True
        )
        results[budget] = (loss.detach(), grads, list(kept))
    assert any(results[None][2]), "the default budget keeps the logits of a gradient call"
    assert results[0][2] and not any(results[0][2]), "memory_budget=0 never keeps them"
    torch.testing.assert_close(results[0][0], results[None][0], rtol=1e-12, atol=1e-12)
    for g0, g1 in zip(results[0][1], results[None][1], strict=True):
        assert (g0 is None) == (g1 is None)
        if g0 is not None:
            torch.testing.assert_close(g0, g1, rtol=1e-10, atol=1e-12)


def test_modules_validate_and_forward_the_budget():
    with pytest.raises(ValueError, match="memory_budget must be an integer >= 0"):
        ck.InfoNCELoss(memory_budget=-1)
    with pytest.raises(ValueError, match="memory_budget must be an integer >= 0"):
        ck.CLIPLoss(memory_budget=1.5)  # type: ignore[arg-type]
    assert ck.SupConLoss(memory_budget=0).options()["memory_budget"] == 0
