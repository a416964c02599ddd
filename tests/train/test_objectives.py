from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import contrastkit
from contrastkit.train import config as C
from contrastkit.train.config import ConfigError
from contrastkit.train.objectives import (
    available_objectives,
    build_objective,
    current_temperature,
)


def _cfg(name: str, **params: object) -> dict[str, object]:
    return C.resolve({"objective": {"name": name, "params": params}})


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
    for n in [
        "InfoNCELoss",
        "NTXentLoss",
        "CLIPLoss",
        "DCLLoss",
        "DCLWLoss",
        "SupConLoss",
        "CWCLLoss",
    ]:
        assert n in names


def test_routing_a_b_matches_direct_call() -> None:
    obj = build_objective(_cfg("DCLLoss", temperature=0.3), 100)
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    got = obj([a, b], torch.zeros(8, dtype=torch.long), torch.arange(8))
    assert torch.equal(got, contrastkit.DCLLoss(temperature=0.3)(a, b))
    # negative control: another pairing of the rows gives another loss
    assert not torch.equal(got, contrastkit.DCLLoss(temperature=0.3)(a, b.roll(1, 0)))


def test_routing_supcon_stacks_views_and_passes_labels() -> None:
    obj = build_objective(_cfg("SupConLoss", temperature=0.1), 100)
    a, b = torch.randn(8, 5), torch.randn(8, 5)
    y = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    expected = contrastkit.SupConLoss(temperature=0.1)(torch.stack([a, b], 1), y)
    assert torch.equal(obj([a, b], y, torch.arange(8)), expected)


def test_routing_index_labels_and_dataset_size_by_signature() -> None:
    cfg = _cfg(f"{__name__}:Recorder")
    obj = build_objective(cfg, 1234)
    rec = obj.module
    assert isinstance(rec, Recorder) and rec.num_samples == 1234  # filled from the data
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    obj([a, b], torch.tensor([1, 2, 3, 4]), torch.tensor([9, 8, 7, 6]))
    assert rec.got["embeddings"].shape == (4, 2, 3)
    assert torch.equal(rec.got["embeddings"][:, 1], b)
    assert rec.got["index"].tolist() == [9, 8, 7, 6] and rec.got["labels"].tolist() == [1, 2, 3, 4]
    views = build_objective(_cfg(f"{__name__}:ViewsObjective"), 10)
    assert float(views([a, b], a, a)) == pytest.approx(float(a.sum() + b.sum()), rel=1e-5)


def test_isogclr_gets_index_and_state_updates() -> None:
    obj = build_objective(_cfg("ISogCLRLoss"), 50)
    a, b = torch.randn(8, 6), torch.randn(8, 6)
    obj([a, b], torch.zeros(8, dtype=torch.long), torch.arange(10, 18))
    seen = obj.module.seen  # type: ignore[union-attr]
    assert seen[10:18].all() and not seen[:10].any()
    assert current_temperature(obj.module) == pytest.approx(0.1, abs=0.05)


def test_cwcl_receives_weight_embeddings() -> None:
    cfg = C.resolve({"objective": {"name": "CWCLLoss", "pairing": "text"}})
    obj = build_objective(cfg, 10)
    a, b, w = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 7)
    got = obj([a, b], torch.zeros(6, dtype=torch.long), torch.arange(6), w)
    ref = contrastkit.CWCLLoss()
    assert torch.allclose(got, ref(a, b, weight_embeddings=w))
    assert not torch.allclose(got, ref(a, b))  # negative control: weights matter


def test_positive_ids_from_labels() -> None:
    cfg = C.resolve({"objective": {"name": "InfoNCELoss", "positive_ids": "labels"}})
    obj = build_objective(cfg, 10)
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.allclose(obj([a, b], y, y), contrastkit.InfoNCELoss()(a, b, positive_ids=y))
    assert not torch.allclose(obj([a, b], y, y), contrastkit.InfoNCELoss()(a, b))
    bad = C.resolve({"objective": {"name": "SigLIPLoss", "positive_ids": "labels"}})
    with pytest.raises(ConfigError, match="objective.positive_ids"):
        build_objective(bad, 10)


def test_learnable_temperature_is_read() -> None:
    obj = build_objective(_cfg("CLIPLoss", temperature=0.05), 10)
    assert current_temperature(obj.module) == pytest.approx(0.05, rel=1e-5)
    assert any(p.requires_grad for p in obj.module.parameters())


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (_cfg("NoSuchLoss"), "objective.name: unknown objective 'NoSuchLoss'"),
        (_cfg("InfoNCELoss", temprature=0.1), "objective.params.temprature"),
        (_cfg("InfoNCELoss", temperature=-1.0), "objective.params"),
        (_cfg(f"{__name__}:NeedsAudio"), r"objective.name: .*needs \['audio'\]"),
        (_cfg("nosuchmodule:X"), "objective.name: cannot import"),
        (C.resolve({"objective": {"name": "CWCLLoss"}}), None),
    ],
)
def test_objective_errors_name_the_key(cfg: dict[str, object], match: str | None) -> None:
    if match is None:  # CWCL's weight_embeddings is optional: views pairing is allowed
        build_objective(cfg, 10)
        return
    with pytest.raises(ConfigError, match=match):
        build_objective(cfg, 10)
