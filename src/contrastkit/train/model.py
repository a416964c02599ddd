"""What trains: encoder, projection head, optional text head / tower and classifier, loss terms.

:class:`TrainModel` holds every trainable tensor of a run (the loss terms' learnable
temperatures included), so one optimizer, one checkpoint and one
``DistributedDataParallel`` wrapper cover them all. Its ``forward`` takes one batch's views and
returns each term's loss: everything that carries gradient runs inside it, as DDP requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.train.encoder import projection_head
from contrastkit.train.terms import Streams, Term


class TrainModel(nn.Module):
    """Encoder + heads + loss terms.

    Args:
        backbone: the encoder (inputs → features ``(B, F)``); its features are what is evaluated.
        feature_dim: ``F``.
        m: the ``[model]`` config table (projection and text-head sizes).
        terms: the loss terms (their modules become ``self.objectives``).
        text_dim: size of the raw text (second-modality) embeddings, or 0 without text.
        num_classes: classes of the classifier head (built when a term takes ``logits``).
        text_tower: a trainable text encoder (``texts → (B, text_dim)``), or None for frozen
            (cached) text embeddings.
        freeze_encoder: no gradient into the backbone, which stays in eval mode.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        m: Mapping[str, Any],
        terms: Mapping[str, Term],
        *,
        text_dim: int = 0,
        num_classes: int = 0,
        text_tower: nn.Module | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = projection_head(feature_dim, m["proj_hidden"], m["proj_dim"], m["head_bn"])
        self.text_tower = text_tower
        self.text_head: nn.Module = nn.Identity()
        if text_dim and m["text_head"] == "linear":
            self.text_head = nn.Linear(text_dim, m["proj_dim"])
        elif text_dim and m["text_head"] == "mlp":
            self.text_head = projection_head(text_dim, m["proj_hidden"], m["proj_dim"])
        needs_logits = any("logits" in t.inputs for t in terms.values())
        self.classifier = nn.Linear(feature_dim, num_classes) if needs_logits else None
        self.objectives = nn.ModuleDict({name: t.module for name, t in terms.items()})
        self.terms = dict(terms)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> TrainModel:
        """As ``nn.Module.train``; a frozen backbone stays in eval mode (BatchNorm statistics)."""
        super().train(mode)
        if self.freeze_encoder:
            self.backbone.eval()
        return self

    def embed(self, x: Tensor) -> Tensor:
        """Projections ``(B, proj_dim)`` of inputs ``x``."""
        out: Tensor = self.head(self.backbone(x))
        return out

    def embed_text(self, raw: Tensor | None = None, texts: list[str] | None = None) -> Tensor:
        """Projected text embeddings: from raw (frozen) embeddings, or texts via the tower."""
        if self.text_tower is not None:
            if texts is None:
                raise ValueError("a trainable text tower needs the texts")
            device = next(self.text_tower.parameters()).device
            ids, mask = self.text_tower.tokenize(texts)  # type: ignore[operator]
            raw = self.text_tower(ids.to(device), mask.to(device))
        if raw is None:
            raise ValueError("no text embeddings for this batch")
        out: Tensor = self.text_head(raw)
        return out

    def forward(
        self,
        x: Tensor,
        num_views: int,
        labels: Tensor | None,
        index: Tensor,
        text_raw: Tensor | None = None,
        texts: list[str] | None = None,
        features: bool = False,
    ) -> dict[str, Tensor]:
        """Each term's unweighted loss on one batch (this rank's rows).

        Args:
            x: the ``V`` views concatenated, ``(V·b, ...)`` (one encoder pass keeps BatchNorm's
                statistics joint over the views); with ``features=True``, the frozen backbone's
                cached features of the views ``(V·b, F)``.
            num_views: ``V``.
            labels: ``(b,)`` or None.
            index: ``(b,)`` dataset positions.
            text_raw: frozen text embeddings ``(b, D2)`` when a term pairs with text.
            texts: the rows' texts, for a trainable text tower.
            features: ``x`` holds backbone features (a frozen backbone's cache).
        """
        if features:
            feats = x
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
                feats = self.backbone(x)  # (V·b, F)
        proj = self.head(feats)  # (V·b, d)
        need_text = any(t.pairing == "text" for t in self.terms.values())
        text = self.embed_text(text_raw, texts) if need_text else None
        logits = None
        if self.classifier is not None:
            logits = self.classifier(feats.chunk(num_views)[0])  # the first view's features
        # Losses run in fp32 (the engine does anyway): mixed precision stops at the embeddings.
        with torch.autocast(device_type=x.device.type, enabled=False):
            streams = Streams(
                views=[v.float() for v in proj.chunk(num_views)],
                text=text.float() if text is not None else None,
                text_raw=text_raw.float() if text_raw is not None else None,
                labels=labels,
                index=index,
                logits=logits.float() if logits is not None else None,
            )
            return {name: term(streams) for name, term in self.terms.items()}
