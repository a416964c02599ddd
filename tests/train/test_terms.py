from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import contrastkit
from contrastkit.train import config as C
from contrastkit.train.config import ConfigError
from contrastkit.train.terms import (
    Streams,
    available_objectives,
    build_term,
    build_terms,
    current_temperature,
)


def _term(name: str, *, world_size: int = 1, has_labels: bool = True, **spec: object):  # type: ignore[no-untyped-def]
    cfg = C.resolve({"objective": {"name": name, **spec}})
    return build_term(
        "main",
        cfg["objectives"]["main"],
        dataset_size=100,
        has_labels=has_labels,
        has_text=True,
        world_size=world_size,
    )


def _streams(a: Tensor, b: Tensor, labels: Tensor | None = None, **kw: Tensor) -> Streams:
    n = a.shape[0]
    return Streams(
        views=[a, b],
        text=kw.get("text"),
        text_raw=kw.get("text_raw"),
        labels=labels if labels is not None else torch.zeros(n, dtype=torch.long),
        index=kw.get("index", torch.arange(n)),
        logits=kw.get("logits"),
    )


class Recorder(nn.Module):
    """Records what the trainer routes to each argument name."""

    def __init__(self, num_samples: int = -1) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.got: dict[str, Tensor] = {}

    def forward(self, embeddings: Tensor, labels: Tensor, index: Tensor) -> Tensor:
        self.got = {"embeddings": embeddings, "labels": labels, "index": index}
        return embeddings.sum()


class ViewsObjective(nn.Module):
    def forward(self, views: Tensor) -> Tensor:
        return views.sum()


class NeedsAudio(nn.Module):
    def forward(self, a: Tensor, b: Tensor, audio: Tensor) -> Tensor:
        return a.sum()


def test_core_objectives_are_selectable() -> None:
    names = available_objectives()
    for n in ["InfoNCELoss", "NTXentLoss", "CLIPLoss", "DCLLoss", "SupConLoss", "CrossEntropy"]:
        assert n in names


def test_routing_a_b_matches_direct_call() -> None:
    term = _term("DCLLoss", params={"temperature": 0.3})
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    got = term(_streams(a, b))
    assert torch.equal(got, contrastkit.DCLLoss(temperature=0.3)(a, b))
    # negative control: another pairing of the rows gives another loss
    assert not torch.equal(got, contrastkit.DCLLoss(temperature=0.3)(a, b.roll(1, 0)))


def test_routing_supcon_stacks_views_and_passes_labels() -> None:
    term = _term("SupConLoss", params={"temperature": 0.1})
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    y = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    expected = contrastkit.SupConLoss(temperature=0.1)(torch.stack([a, b], 1), y)
    assert torch.equal(term(_streams(a, b, y)), expected)


def test_text_pairing_routes_image_and_text() -> None:
    term = _term("CLIPLoss", pairing="text", params={"temperature": 0.1})
    a, b, text = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 4)
    got = term(_streams(a, b, text=text))
    assert torch.allclose(got, contrastkit.CLIPLoss(temperature=0.1)(a, text))
    assert not torch.allclose(got, contrastkit.CLIPLoss(temperature=0.1)(a, b))


def test_routing_index_labels_and_dataset_size_by_signature() -> None:
    term = _term(f"{__name__}:Recorder")
    rec = term.module
    assert isinstance(rec, Recorder) and rec.num_samples == 100  # filled from the data
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    term(_streams(a, b, torch.tensor([1, 2, 3, 4]), index=torch.tensor([9, 8, 7, 6])))
    assert rec.got["embeddings"].shape == (4, 2, 3)
    assert torch.equal(rec.got["embeddings"][:, 1], b)
    assert rec.got["index"].tolist() == [9, 8, 7, 6] and rec.got["labels"].tolist() == [1, 2, 3, 4]
    views = _term(f"{__name__}:ViewsObjective")
    assert float(views(_streams(a, b))) == pytest.approx(float(a.sum() + b.sum()), rel=1e-5)


def test_isogclr_gets_index_and_state_updates() -> None:
    term = _term("ISogCLRLoss")
    a, b = torch.randn(8, 6), torch.randn(8, 6)
    term(_streams(a, b, index=torch.arange(10, 18)))
    seen = term.module.seen  # type: ignore[union-attr]
    assert seen[10:18].all() and not seen[:10].any()
    assert current_temperature(term.module) == pytest.approx(0.1, abs=0.05)


def test_cwcl_receives_weight_embeddings() -> None:
    term = _term("CWCLLoss", pairing="text")
    a, text, w = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 7)
    got = term(_streams(a, a, text=text, text_raw=w))
    ref = contrastkit.CWCLLoss()
    assert torch.allclose(got, ref(a, text, weight_embeddings=w))
    assert not torch.allclose(got, ref(a, text))  # negative control: weights matter


def test_positive_ids_from_labels() -> None:
    term = _term("InfoNCELoss", positive_ids="labels")
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.allclose(term(_streams(a, b, y)), contrastkit.InfoNCELoss()(a, b, positive_ids=y))
    assert not torch.allclose(term(_streams(a, b, y)), contrastkit.InfoNCELoss()(a, b))
    with pytest.raises(ConfigError, match="objectives.main.positive_ids"):
        _term("SigLIPLoss", positive_ids="labels")


def test_cross_entropy_term_and_several_terms() -> None:
    cfg = C.resolve(
        {},
        {
            "objective.name": "NTXentLoss",
            "objectives.ce.name": "CrossEntropy",
            "objectives.ce.weight": 0.5,
            "objectives.ce.params": {"label_smoothing": 0.1},
        },
    )
    terms = build_terms(cfg, dataset_size=10, has_labels=True, has_text=False)
    assert list(terms) == ["main", "ce"] and terms["ce"].weight == 0.5
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    got = terms["ce"](_streams(a, b, y, logits=logits))
    assert torch.allclose(got, F.cross_entropy(logits, y, label_smoothing=0.1))
    with pytest.raises(ConfigError, match="objectives.ce.name: CrossEntropy needs class labels"):
        build_terms(cfg, dataset_size=10, has_labels=False, has_text=False)


def test_learnable_temperature_is_read() -> None:
    term = _term("CLIPLoss", params={"temperature": 0.05})
    assert current_temperature(term.module) == pytest.approx(0.05, rel=1e-5)
    assert any(p.requires_grad for p in term.module.parameters())


def test_several_ranks_gather_or_warn_or_refuse() -> None:
    # a loss with gather_distributed gets it on several ranks (and not on one)
    assert _term("CLIPLoss", world_size=2).module.gather_distributed is True  # type: ignore[union-attr]
    assert _term("CLIPLoss", world_size=1).module.gather_distributed is False  # type: ignore[union-attr]
    with pytest.warns(UserWarning, match="DCLLoss has no gather_distributed"):
        _term("DCLLoss", world_size=2)
    with pytest.raises(ConfigError, match="per-sample state"):
        _term("SogCLRLoss", world_size=2)


@pytest.mark.parametrize(
    ("name", "spec", "match"),
    [
        ("NoSuchLoss", {}, "objectives.main.name: unknown objective 'NoSuchLoss'"),
        ("InfoNCELoss", {"params": {"temprature": 0.1}}, "objectives.main.params.temprature"),
        ("InfoNCELoss", {"params": {"temperature": -1.0}}, "objectives.main.params"),
        (f"{__name__}:NeedsAudio", {}, r"objectives.main.name: .*needs \['audio'\]"),
        ("nosuchmodule:X", {}, "objectives.main.name: cannot import"),
        ("CWCLLoss", {}, None),
    ],
)
def test_objective_errors_name_the_key(
    name: str, spec: dict[str, object], match: str | None
) -> None:
    if match is None:  # CWCL's weight_embeddings is optional: views pairing is allowed
        _term(name, **spec)
        return
    with pytest.raises(ConfigError, match=match):
        _term(name, **spec)
