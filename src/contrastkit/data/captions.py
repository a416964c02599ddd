"""Per-image captions grounded in each image: class noun, WordNet gloss, measured properties.

Fashion-MNIST has one label per image and no text. To give a frozen sentence encoder something
per image to say (so that text–text similarity is continuous, as in CWCL's setting, and so that
an image encoder can be aligned to language about *that* image), every image gets a caption made
of three parts, exactly as follows:

1. **The class noun** (``"T-shirt/top"`` is written ``"T-shirt"``).
2. **Its WordNet 3.0 gloss**, read offline from ``/usr/share/wordnet`` (``index.noun`` gives the
   synset offsets of a lemma in sense order, ``data.noun`` the synset line at that byte offset;
   the gloss is the text after ``|`` up to the first quoted example). The sense of each class is
   fixed by hand in :data:`FASHION_MNIST_SENSES` (e.g. ``bag`` is sense 4, the handbag, not sense
   1, "a flexible container"; ``ankle boot`` uses ``boot`` sense 1). A caption includes the gloss
   with probability ``gloss_p`` (default 0.5).
3. **Properties measured on the image** (:func:`measure_properties`, on the grayscale image in
   ``[0, 1]``; Fashion-MNIST stores *negated* intensities, so a high value is a dark garment):

   ==============  ============================================================================
   darkness        mean intensity of the ink pixels (``> 0.1``)
   coverage        fraction of the frame covered by ink
   aspect          width / height of the ink's bounding box
   symmetry        ``1 - Σ|x - mirror(x)| / (2 Σ x)`` (left–right mirror about the frame centre)
   texture         mean absolute finite difference (x and y) inside the ink, over its darkness
   ==============  ============================================================================

   Each is cut into three levels at the terciles of the rows being captioned
   (:class:`PropertyBins`; pass ``bins`` to reuse another split's cuts), and each level has one
   adjective (:data:`PROPERTY_WORDS`, e.g. ``darkness``: pale / mid-toned / dark).

A caption states 2 or 3 of the 5 properties (chosen at random, written in a fixed order) through
one of :data:`TEMPLATES`; every random choice comes from a generator seeded with ``seed`` and the
row, so captions are reproducible. Identical strings repeat across images (same class, same
levels, same template), so embedding them (:func:`embed_captions`) encodes each distinct string
once, and :func:`contrastkit.data.text.embed_texts` caches the result on disk.

Besides captions, :func:`control_embeddings` builds the controls of the "Aligned with LLM" study
(shuffled descriptions, random vectors with the same class structure).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

WORDNET_DIR = Path("/usr/share/wordnet")

# class name -> (noun written in captions, WordNet lemma, sense number counted from 1)
FASHION_MNIST_SENSES: dict[str, tuple[str, str, int]] = {
    "T-shirt/top": ("T-shirt", "t-shirt", 1),
    "trouser": ("trouser", "trouser", 1),
    "pullover": ("pullover", "pullover", 1),
    "dress": ("dress", "dress", 1),
    "coat": ("coat", "coat", 1),
    "sandal": ("sandal", "sandal", 1),
    "shirt": ("shirt", "shirt", 1),
    "sneaker": ("sneaker", "sneaker", 1),
    "bag": ("bag", "bag", 4),
    "ankle boot": ("ankle boot", "boot", 1),
}

PROPERTIES: tuple[str, ...] = ("darkness", "coverage", "aspect", "symmetry", "texture")
# extra measurements never written in captions (held-out targets for read-outs)
HELD_OUT_PROPERTIES: tuple[str, ...] = ("height", "vertical_centre", "holes", "top_share")

PROPERTY_WORDS: dict[str, tuple[str, str, str]] = {
    "darkness": ("pale", "mid-toned", "dark"),
    "coverage": ("slim", "medium-sized", "bulky"),
    "aspect": ("narrow", "square-ish", "wide"),
    "symmetry": ("lopsided", "fairly symmetric", "symmetric"),
    "texture": ("plain", "lightly textured", "patterned"),
}

TEMPLATES: tuple[str, ...] = (
    "a photo of a {adj} {noun}.",
    "a {adj} {noun}.",
    "an image of a {noun} that is {adj}.",
    "this {noun} looks {adj}.",
    "a product photo: {adj} {noun}.",
    "a picture of a {noun}, {adj}.",
)
INK_THRESHOLD = 0.1


class WordNetError(ValueError):
    """A WordNet file is missing or has no entry for the requested lemma/sense."""


@lru_cache(maxsize=64)
def wordnet_gloss(lemma: str, sense: int = 1, root: str = str(WORDNET_DIR)) -> str:
    """The gloss (definition, without examples) of noun ``lemma``'s ``sense``-th synset.

    Reads WordNet 3.0's ``index.noun`` (``lemma pos n_synsets n_ptrs [ptrs] n_sense n_tagged
    offsets...``) and the ``data.noun`` line at the synset's byte offset.

    Raises:
        WordNetError: missing files, unknown lemma, or a sense beyond the lemma's synsets.
    """
    base = Path(root)
    index, data = base / "index.noun", base / "data.noun"
    for path in (index, data):
        if not path.is_file():
            raise WordNetError(f"{path} is missing (WordNet 3.0 must be installed there)")
    if sense < 1:
        raise ValueError(f"sense must be >= 1, got {sense}")
    key = lemma.lower().replace(" ", "_") + " n "
    offsets: list[int] | None = None
    with index.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith(key):
                fields = line.split()
                n_synsets, n_ptrs = int(fields[2]), int(fields[3])
                offsets = [int(x) for x in fields[4 + n_ptrs + 2 : 4 + n_ptrs + 2 + n_synsets]]
                break
    if offsets is None:
        raise WordNetError(f"{index}: no noun {lemma!r}")
    if sense > len(offsets):
        raise WordNetError(f"{index}: noun {lemma!r} has {len(offsets)} senses, asked {sense}")
    with data.open("rb") as fb:
        fb.seek(offsets[sense - 1])
        line = fb.readline().decode("utf-8")
    if not line.startswith(f"{offsets[sense - 1]:08d} ") or "|" not in line:
        raise WordNetError(f"{data}: no synset line at offset {offsets[sense - 1]}")
    gloss = line.split("|", 1)[1].strip()
    gloss = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
    return re.sub(r"^\([^)]*\)\s*", "", gloss)  # "(usually in the plural) a garment ..."


def with_articles(text: str) -> str:
    """Write ``a`` as ``an`` before a vowel sound (``an ankle boot``, but ``a one-piece``)."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU](?!ne|ni|se))", r"\1n ", text)


def class_noun(name: str) -> str:
    """The noun a caption uses for class ``name``."""
    return FASHION_MNIST_SENSES[name][0] if name in FASHION_MNIST_SENSES else name


def class_gloss(name: str, root: str | Path = WORDNET_DIR) -> str:
    """The WordNet gloss of a class (its fixed sense, or sense 1 of the name itself)."""
    _, lemma, sense = FASHION_MNIST_SENSES.get(name, (name, name, 1))
    return wordnet_gloss(lemma, sense, str(root))


def class_descriptions(class_names: Sequence[str], root: str | Path = WORDNET_DIR) -> list[str]:
    """One zero-shot description per class: ``"a photo of a {noun}, {gloss}."``."""
    if not class_names:
        raise ValueError("class_names must not be empty")
    return [
        with_articles(f"a photo of a {class_noun(n)}, {class_gloss(n, root)}.") for n in class_names
    ]


def _grayscale(images: Tensor) -> Tensor:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images must contain at least one row")
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    return x.mean(1)  # (N, H, W)


def measure_properties(images: Tensor, batch_size: int = 4096) -> dict[str, Tensor]:
    """The caption properties and the held-out properties of each image, ``float32 (N,)``.

    ``images``: ``uint8`` or float ``(N, C, H, W)`` (channels are averaged). The captioned
    properties are described in the module docstring. Held-out ones (never written in captions):
    ``height`` (bounding-box height / frame height), ``vertical_centre`` (ink-weighted mean row /
    frame height), ``holes`` (fraction of the bounding box without ink), ``top_share`` (share of
    the ink mass in the top half of the bounding box). An image without ink gets 0 everywhere.
    """
    out: dict[str, list[Tensor]] = {k: [] for k in PROPERTIES + HELD_OUT_PROPERTIES}
    for start in range(0, images.shape[0], batch_size):
        x = _grayscale(images[start : start + batch_size])  # (n, H, W)
        n, h, w = x.shape
        ink = x > INK_THRESHOLD
        count = ink.flatten(1).sum(1).float()
        has = count > 0
        safe = count.clamp_min(1)
        mass = x.flatten(1).sum(1)
        out["darkness"].append((x * ink).flatten(1).sum(1) / safe)
        out["coverage"].append(count / (h * w))
        rows_any, cols_any = ink.any(2), ink.any(1)  # (n, H), (n, W)
        ar_h, ar_w = torch.arange(h), torch.arange(w)
        top = torch.where(rows_any, ar_h, h).min(1).values
        bottom = torch.where(rows_any, ar_h, -1).max(1).values
        left = torch.where(cols_any, ar_w, w).min(1).values
        right = torch.where(cols_any, ar_w, -1).max(1).values
        bh = (bottom - top + 1).clamp_min(1).float()
        bw = (right - left + 1).clamp_min(1).float()
        out["aspect"].append(torch.where(has, bw / bh, torch.zeros_like(bw)))
        asym = (x - x.flip(2)).abs().flatten(1).sum(1) / (2 * mass).clamp_min(1e-6)
        out["symmetry"].append(torch.where(has, 1 - asym, torch.zeros_like(asym)))
        gx = (x[:, :, 1:] - x[:, :, :-1]).abs()
        gy = (x[:, 1:, :] - x[:, :-1, :]).abs()
        inner_x = ink[:, :, 1:] & ink[:, :, :-1]
        inner_y = ink[:, 1:, :] & ink[:, :-1, :]
        grad = (gx * inner_x).flatten(1).sum(1) + (gy * inner_y).flatten(1).sum(1)
        n_inner = (inner_x.flatten(1).sum(1) + inner_y.flatten(1).sum(1)).clamp_min(1).float()
        dark = out["darkness"][-1].clamp_min(1e-6)
        out["texture"].append(torch.where(has, grad / n_inner / dark, torch.zeros_like(grad)))
        out["height"].append(torch.where(has, bh / h, torch.zeros_like(bh)))
        row_mass = x.sum(2)  # (n, H)
        centre = (row_mass * ar_h).sum(1) / mass.clamp_min(1e-6)
        out["vertical_centre"].append(torch.where(has, centre / h, torch.zeros_like(centre)))
        out["holes"].append(torch.where(has, 1 - count / (bh * bw), torch.zeros_like(count)))
        mid = (top.float() + bottom.float()) / 2
        upper = (row_mass * (ar_h[None, :].float() <= mid[:, None])).sum(1)
        out["top_share"].append(
            torch.where(has, upper / mass.clamp_min(1e-6), torch.zeros_like(mass))
        )
    return {k: torch.cat(v).float() for k, v in out.items()}


@dataclass(frozen=True)
class PropertyBins:
    """Two cut points per captioned property: level 0 below the first, 2 above the second."""

    cuts: dict[str, tuple[float, float]]

    @classmethod
    def fit(cls, props: dict[str, Tensor]) -> PropertyBins:
        """Terciles of each property over the given rows."""
        cuts = {}
        for k in PROPERTIES:
            q = torch.quantile(props[k].double(), torch.tensor([1 / 3, 2 / 3], dtype=torch.double))
            cuts[k] = (float(q[0]), float(q[1]))
        return cls(cuts)

    def levels(self, props: dict[str, Tensor]) -> dict[str, Tensor]:
        """``int64 (N,)`` level 0, 1 or 2 of each captioned property."""
        return {
            k: (props[k] > self.cuts[k][0]).long() + (props[k] > self.cuts[k][1]).long()
            for k in PROPERTIES
        }


def image_captions(
    images: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    *,
    seed: int = 0,
    gloss_p: float = 0.5,
    bins: PropertyBins | None = None,
    wordnet_root: str | Path = WORDNET_DIR,
) -> list[str]:
    """One caption per image (see the module docstring for exactly how it is made).

    Args:
        images: ``(N, C, H, W)`` uint8 (or float in ``[0, 1]``) images.
        labels: ``int64 (N,)`` class ids indexing ``class_names``.
        class_names: the class names (Fashion-MNIST's get their WordNet senses fixed).
        seed: seeds the choice of template, properties and gloss (per row: ``seed`` + row).
        gloss_p: probability of appending the WordNet gloss.
        bins: property cut points (default: terciles of these rows).
        wordnet_root: the WordNet 3.0 ``dict`` folder.

    Raises:
        ValueError: mismatched lengths, a label outside ``class_names``, ``gloss_p`` outside
            ``[0, 1]``.
    """
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"labels must be (N,) with N = {images.shape[0]} rows of images, "
            f"got shape {tuple(labels.shape)}"
        )
    if not 0.0 <= gloss_p <= 1.0:
        raise ValueError(f"gloss_p must be in [0, 1], got {gloss_p}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise ValueError(f"labels must index class_names (0..{len(class_names) - 1})")
    props = measure_properties(images)
    levels = (bins or PropertyBins.fit(props)).levels(props)
    nouns = [class_noun(n) for n in class_names]
    glosses = [class_gloss(n, wordnet_root) for n in class_names]
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    template_ids = torch.randint(len(TEMPLATES), (n,), generator=g).tolist()
    n_props = (2 + torch.randint(2, (n,), generator=g)).tolist()
    picks = torch.rand(n, len(PROPERTIES), generator=g).argsort(1).tolist()
    with_gloss = (torch.rand(n, generator=g) < gloss_p).tolist()
    lv = torch.stack([levels[k] for k in PROPERTIES], 1).tolist()  # (N, 5)
    out = []
    for i, y in enumerate(labels.tolist()):
        chosen = sorted(picks[i][: n_props[i]])
        words = [PROPERTY_WORDS[PROPERTIES[j]][lv[i][j]] for j in chosen]
        adj = ", ".join(words[:-1]) + " and " + words[-1]
        text = TEMPLATES[template_ids[i]].format(adj=adj, noun=nouns[y])
        if with_gloss[i]:
            text = text[:-1] + f" ({glosses[y]})."
        out.append(with_articles(text))
    return out


def embed_captions(captions: Sequence[str], cache: bool = True) -> Tensor:
    """Frozen MiniLM embeddings ``(N, 384)`` of captions (distinct strings encoded once, cached)."""
    from contrastkit.data.text import embed_texts

    if len(captions) == 0:
        raise ValueError("captions must contain at least one string")
    unique = sorted(set(captions))
    where = {t: i for i, t in enumerate(unique)}
    emb = embed_texts(unique, cache=cache)
    return emb[torch.tensor([where[t] for t in captions])]


CONTROLS = ("none", "shuffled", "shuffled-in-class", "class-random")


def control_embeddings(paired: Tensor, labels: Tensor, control: str, seed: int = 0) -> Tensor:
    """Replace the paired text embeddings by a control (rows L2-normalised).

    * ``"none"``: unchanged.
    * ``"shuffled"``: rows permuted across the whole set (text unrelated to its image).
    * ``"shuffled-in-class"``: rows permuted within each class (the class survives, what the
      caption says about *this* image does not).
    * ``"class-random"``: no language at all but the same class structure: each class's mean
      is replaced by a random direction of the same norm, and each row's deviation from its
      class mean is another row's (same class) deviation, randomly rotated.

    Raises:
        ValueError: unknown ``control`` or mismatched shapes.
    """
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if paired.ndim != 2 or labels.shape != (paired.shape[0],):
        raise ValueError(
            f"paired must be (N, D) and labels (N,), got {tuple(paired.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if control == "none":
        return paired
    g = torch.Generator().manual_seed(seed)
    n, d = paired.shape
    if control == "shuffled":
        return paired[torch.randperm(n, generator=g)]
    out = paired.clone()
    within = torch.arange(n)
    for c in torch.unique(labels).tolist():
        rows = (labels == c).nonzero().flatten()
        within[rows] = rows[torch.randperm(len(rows), generator=g)]
    if control == "shuffled-in-class":
        return paired[within]
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q = q.float()
    for c in torch.unique(labels).tolist():
        rows = (labels == c).nonzero().flatten()
        mean = paired[rows].mean(0)
        direction = F.normalize(torch.randn(d, generator=g), dim=0)
        out[rows] = direction * mean.norm() + (paired[within[rows]] - mean) @ q
    return F.normalize(out, dim=1)
