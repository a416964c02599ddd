"""One consistent API: the same input names, keyword-only options and checks everywhere."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import contrastkit as ck
from contrastkit.losses._base import LossModule

#: Module -> the function it wraps.
MODULE_FUNCTION = {
    "AMCLLoss": "amcl_loss",
    "AlignUniformLoss": "align_uniform_loss",
    "CACRLoss": "cacr_loss",
    "CLIPLoss": "clip_loss",
    "CWCLLoss": "cwcl",
    "CoconutLoss": "coconut_loss",
    "ContrastiveGapLoss": "contrastive_gap_loss",
    "DCLLoss": "dcl",
    "DCLWLoss": "dclw",
    "GRAMLoss": "gram_loss",
    "GroCoLoss": "groco_loss",
    "HardContrastiveLoss": "hard_contrastive_loss",
    "ISogCLRLoss": "isogclr_loss",
    "InfoNCELoss": "info_nce",
    "MVDHELLoss": "mv_dhel",
    "MVInfoNCELoss": "mv_info_nce",
    "MWLoss": "mw_loss",
    "MetrixContrastiveLoss": "metrix_contrastive",
    "MetrixMultiSimilarityLoss": "metrix_multi_similarity",
    "MixCoLoss": "mixco_loss",
    "MoCHiLoss": "moco_loss",
    "MoCoLoss": "moco_loss",
    "MultiSimilarityLoss": "multi_similarity_loss",
    "NTXentLoss": "nt_xent",
    "SigLIPLoss": "siglip",
    "SoftCLIPLoss": "soft_clip_loss",
    "SogCLRLoss": "sogclr_loss",
    "SourceSupConLoss": "source_supcon",
    "SupConLoss": "supcon",
    "SupReMixLoss": "supremix",
    "SwAVLoss": "swav_loss",
    "SymileLoss": "symile_loss",
    "WeightedInfoNCELoss": "weighted_info_nce",
    "WhitenedCSELoss": "whitened_cse_loss",
}
#: Constructor arguments that size the module (not hyper-parameters): may stay positional.
STRUCTURAL = {"num_samples", "dim"}
#: Function arguments that are data (inputs), positional; everything else is keyword-only.
INPUTS = {
    "a", "b", "x", "views", "embeddings", "labels", "indices_tuple", "anchor", "others",
    "modalities", "anchors", "positives", "negatives", "student", "teacher", "rehearsal_mask",
    "q", "k", "queue_features", "crop_scores", "queue_scores", "log_u", "seen", "temperatures",
    "momentum", "assignments", "scores",
}  # fmt: skip
#: Arguments of forward that the function does not take: the dataset index and γ schedule of the
#: stateful SogCLR modules (their functions take the state rows instead), MoCHi's sampler.
MODULE_ONLY = {"index", "gamma", "generator"}

LOSS_MODULES = [
    name
    for name in ck.__all__
    if inspect.isclass(getattr(ck, name)) and issubclass(getattr(ck, name), LossModule)
]
LOSS_FUNCTIONS = sorted(set(MODULE_FUNCTION.values()) | {
    "alignment_loss", "uniformity_loss", "cross_modal_uniformity_loss", "cua_loss",
    "cuaxu_loss", "hard_simple_loss", "meow_loss", "supcon_per_anchor", "gram_volume",
    "sinkhorn", "mochi_negatives", "multi_similarity_mine", "group_whiten", "mixco_mix",
    "von_mises_fisher_weights", "metrix_mixes",
})  # fmt: skip


def test_every_exported_loss_class_has_a_module_function_pair():
    classes = {n for n in ck.__all__ if n.endswith("Loss")}
    assert classes == set(MODULE_FUNCTION)
    assert set(LOSS_MODULES) == set(MODULE_FUNCTION)


@pytest.mark.parametrize("name", sorted(MODULE_FUNCTION))
def test_module_and_function_take_the_same_input_names(name):
    forward = inspect.signature(getattr(ck, name).forward).parameters
    function = inspect.signature(getattr(ck, MODULE_FUNCTION[name])).parameters
    inputs = [p for p in forward if p != "self"]
    missing = set(inputs) - set(function) - MODULE_ONLY
    assert not missing, (name, missing)
    positional = [
        p.name for p in function.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert [p for p in positional if p in inputs] == [p for p in inputs if p in positional]


@pytest.mark.parametrize("name", sorted(MODULE_FUNCTION))
def test_module_options_are_keyword_only_with_check_values(name):
    params = inspect.signature(getattr(ck, name).__init__).parameters
    assert "check_values" in params
    for p in params.values():
        if p.name in ("self", *STRUCTURAL):
            continue
        assert p.kind is p.KEYWORD_ONLY, (name, p.name)
    forward = inspect.signature(getattr(ck, name).forward).parameters
    assert "check_values" not in forward  # one place: the constructor


@pytest.mark.parametrize("name", LOSS_FUNCTIONS)
def test_function_hyper_parameters_are_keyword_only(name):
    params = inspect.signature(getattr(ck, name)).parameters
    for p in params.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            assert p.name in INPUTS, (name, p.name)


@pytest.mark.parametrize("name", sorted(set(LOSS_FUNCTIONS) - {"mixco_mix", "metrix_mixes",
    "von_mises_fisher_weights"}))  # fmt: skip
def test_every_function_has_the_value_switch(name):
    params = inspect.signature(getattr(ck, name)).parameters
    assert params["check_values"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["check_values"].default is True


def test_module_temperature_may_be_a_number_a_tensor_or_a_module():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    ref = ck.info_nce(a, b, temperature=0.2)
    torch.testing.assert_close(ck.InfoNCELoss(temperature=0.2)(a, b), ref)
    as_buffer = ck.InfoNCELoss(temperature=torch.tensor(0.2))
    assert "temperature" in dict(as_buffer.named_buffers())  # follows .to(device)
    torch.testing.assert_close(as_buffer(a, b), ref)
    learned = ck.InfoNCELoss(temperature=ck.LearnableTemperature(init=0.2))
    torch.testing.assert_close(learned(a, b), ref)
    learned(a, b).backward()
    assert learned.temperature.log_inverse.grad is not None
    with pytest.raises(ValueError, match="^temperature must be"):
        ck.InfoNCELoss(temperature=torch.tensor([0.1, 0.2]))


def test_module_checks_values_switch_reaches_the_function():
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    a[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^embeddings contains NaN"):
        ck.SupConLoss()(torch.stack([a, b], 1))
    assert torch.isnan(ck.SupConLoss(check_values=False)(torch.stack([a, b], 1)))


def test_loss_module_rejects_unknown_shared_options():
    with pytest.raises(TypeError, match="unknown shared options"):
        LossModule(temperature=0.1, bogus=True)
    with pytest.raises(ValueError, match="^check_values must be a bool"):
        LossModule(check_values="yes")  # type: ignore[arg-type]
    assert isinstance(LossModule(), nn.Module)


def test_trainer_inputs_keep_their_names():
    # The trainer routes a batch by forward argument names (a, b / embeddings, labels / views).
    routed = {"a", "b", "embeddings", "labels", "views", "index", "weight_embeddings",
              "positive_ids"}  # fmt: skip
    for name in ("InfoNCELoss", "CLIPLoss", "NTXentLoss", "DCLLoss", "SigLIPLoss", "CWCLLoss",
                 "SupConLoss", "MVInfoNCELoss", "SogCLRLoss"):  # fmt: skip
        forward = set(inspect.signature(getattr(ck, name).forward).parameters) - {"self"}
        required = {
            p.name
            for p in inspect.signature(getattr(ck, name).forward).parameters.values()
            if p.default is p.empty and p.name != "self"
        }
        assert required <= routed, (name, required - routed)
        assert forward & routed
