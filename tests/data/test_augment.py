from __future__ import annotations

import pytest
import torch

from contrastkit.data.augment import AugmentConfig, ViewGenerator, build_augmentation, step_seed


def test_views_are_deterministic_per_position_and_leave_global_rng_alone() -> None:
    x = torch.rand(16, 1, 28, 28)
    gen = ViewGenerator(build_augmentation(AugmentConfig()), seed=0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    v1 = gen(x, epoch=1, step=2)
    assert torch.equal(torch.get_rng_state(), before)  # global stream untouched
    v2 = gen(x, epoch=1, step=2)
    assert all(torch.equal(a, b) for a, b in zip(v1, v2, strict=True))
    assert v1[0].shape == x.shape and not torch.equal(v1[0], v1[1])  # two different views
    other = gen(x, epoch=1, step=3)
    assert not torch.equal(other[0], v1[0])  # negative control: another step, other views
    assert not torch.equal(ViewGenerator(gen.augmentation, seed=1)(x, 1, 2)[0], v1[0])


def test_step_seed_is_injective_on_small_grid() -> None:
    seeds = {
        step_seed(s, e, t, v)
        for s in range(3)
        for e in range(5)
        for t in range(50)
        for v in range(2)
    }
    assert len(seeds) == 3 * 5 * 50 * 2


def test_stages_can_be_switched_off() -> None:
    aug = build_augmentation(AugmentConfig(flip_p=0, affine_p=0, jitter_p=0))
    assert len(aug) == 1
    x = torch.rand(4, 1, 28, 28)
    full_crop = build_augmentation(
        AugmentConfig(crop_scale=(1.0, 1.0), flip_p=0, affine_p=0, jitter_p=0)
    )
    # a crop of the whole image with aspect ratio 1 is (nearly) the identity
    out = ViewGenerator(full_crop, 0)(x, 0, 0, num_views=1)[0]
    assert out.shape == x.shape


def test_intensity_jitter_changes_brightness_and_contrast_only() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) * 0.6 + 0.2
    only_jitter = AugmentConfig(crop_scale=(1.0, 1.0), flip_p=0, affine_p=0, jitter_p=1.0)
    out = ViewGenerator(build_augmentation(only_jitter), 0)(x, 0, 0, num_views=1)[0]
    assert out.shape == x.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # per-image mean and spread move (the views cannot be matched by their histogram) ...
    assert float((out.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs().mean()) > 0.02
    assert float((out.std((1, 2, 3)) / x.std((1, 2, 3)) - 1).abs().mean()) > 0.05
    # ... while the layout stays: each view is still most correlated with its own image
    flat_x, flat_o = x.flatten(1), out.flatten(1)
    corr = torch.corrcoef(torch.cat([flat_o, flat_x]))[:64, 64:]
    assert torch.equal(corr.argmax(1), torch.arange(64))


def test_defaults_match_the_training_config() -> None:
    from dataclasses import fields

    from contrastkit.train.config import DEFAULTS

    cfg = AugmentConfig()
    # the image pipeline's keys; vector_* configure VectorAugment (precomputed embeddings)
    augment = {
        k: v
        for k, v in DEFAULTS["augment"].items()
        if not k.startswith("vector_") and k != "enabled"
    }
    assert sorted(augment) == sorted(f.name for f in fields(AugmentConfig))
    for name, value in augment.items():
        expected = tuple(value) if isinstance(value, list) else value
        assert getattr(cfg, name) == expected, name


def test_vector_views_drop_and_jitter_features_deterministically() -> None:
    from contrastkit.data.augment import VectorAugment, ViewGenerator

    x = torch.randn(256, 32) * torch.linspace(0.1, 10, 32)  # features of very different scales
    gen = ViewGenerator(VectorAugment(noise=0.1, dropout=0.25), seed=3)
    a, b = gen(x, epoch=0, step=5)
    again = gen(x, epoch=0, step=5)
    assert torch.equal(a, again[0]) and torch.equal(b, again[1]) and not torch.equal(a, b)
    dropped = (a == 0).float().mean()
    assert 0.2 < float(dropped) < 0.3  # about a quarter of the features zeroed
    kept = a != 0
    rel = ((a - x)[kept].abs() / x.std(0).expand_as(x)[kept]).mean()
    assert 0.05 < float(rel) < 0.15  # noise scaled to each feature's spread (E|N(0, .1)| = .08)
    with pytest.raises(ValueError, match="dropout"):
        VectorAugment(dropout=1.0)
