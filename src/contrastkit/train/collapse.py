"""Run-time check: does an objective sit at its *collapse value*?

The collapse value of a loss term is the loss it takes when every embedding of the batch is the
same point: ``ln(2B - 1)`` for symmetric NT-Xent over ``B`` pairs, ``ln(K + 1)`` for the hard
contrastive loss with ``K`` hard negatives, ``ln(2B - 2)`` for DCL. A loss that stays there
means the encoder maps everything to one point (uniformity ≈ 0): the gradient of any
normalised contrastive loss vanishes there, so training does not leave it. The trainer calls
:meth:`CollapseMonitor.check` at the end of each epoch and warns once per term, when the loss
sits there at two consecutive epoch ends (a randomly initialised encoder maps its inputs close
together, so the first epoch may start near the collapse value and still leave it).

The value is computed, not tabulated: a copy of the term (no state of the real one changes —
memory queues and per-sample estimators stay as they were) is evaluated on one repeated unit
vector. Terms fed by labels, logits or a second modality depend on more than the embeddings and
are not checked.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping

import torch

from contrastkit.train.terms import Streams, Term

# Terms whose collapse value depends on more than the embeddings (not checked).
_UNCHECKED_INPUTS = {"labels", "logits", "positive_ids", "weight_embeddings"}


@torch.no_grad()
def collapse_value(
    term: Term, num_views: int, batch_size: int, dim: int, device: torch.device | str = "cpu"
) -> float | None:
    """The loss of ``term`` when all ``num_views × batch_size`` embeddings are one point.

    Args:
        term: the loss term (left untouched: a deep copy is evaluated).
        num_views: views per row.
        batch_size: rows per batch (this process's).
        dim: embedding width.
        device: where to evaluate.

    Returns:
        The value, or None for terms that are not checked (text pairing, labels or logits as
        input) or that cannot be evaluated on the collapsed batch (any exception).
    """
    if term.pairing != "views" or term.inputs & _UNCHECKED_INPUTS:
        return None
    point = torch.nn.functional.normalize(torch.ones(dim, device=device), dim=0)
    views = [point.expand(batch_size, dim).clone() for _ in range(num_views)]
    streams = Streams(
        views=views,
        text=None,
        text_raw=None,
        labels=None,
        index=torch.arange(batch_size, device=device),
    )
    try:
        value = float(copy.deepcopy(term)(streams))
    except Exception:  # a diagnostic never stops training: a term it cannot probe is not checked
        return None
    return value if math.isfinite(value) else None


class CollapseMonitor:
    """Warns (once per term) when a term's loss stays within ``rel_tol`` of its collapse value.

    Args:
        terms: the run's loss terms, by name.
        num_views: views per row.
        batch_size: rows per batch (this process's).
        dim: embedding width.
        device: where to evaluate the collapse values.
        rel_tol: relative tolerance, ``|loss - value| ≤ rel_tol · max(1, |value|)``.
        patience: consecutive checks at the collapse value before the warning.
    """

    def __init__(
        self,
        terms: Mapping[str, Term],
        num_views: int,
        batch_size: int,
        dim: int,
        device: torch.device | str = "cpu",
        rel_tol: float = 0.01,
        patience: int = 2,
    ) -> None:
        self.terms = terms
        self.num_views, self.batch_size, self.dim = num_views, batch_size, dim
        self.device = device
        self.rel_tol, self.patience = rel_tol, patience
        self.warned: set[str] = set()
        self.hits: dict[str, int] = {}  # consecutive checks at the collapse value, by term

    def check(self, losses: Mapping[str, float], uniformity: float | None = None) -> list[str]:
        """Warn about every term whose ``losses[name]`` sits at its collapse value (again).

        The collapse value is recomputed at each call (a learnable temperature moves it).

        Args:
            losses: the latest loss of each term, by name.
            uniformity: the projections' uniformity (``log E exp(-2‖x - y‖²)``), quoted in the
                message when known.

        Returns:
            The messages of this call's new warnings.
        """
        messages = []
        for name, loss in losses.items():
            term = self.terms.get(name)
            if term is None or name in self.warned or not math.isfinite(loss):
                continue
            value = collapse_value(term, self.num_views, self.batch_size, self.dim, self.device)
            if value is None or abs(loss - value) > self.rel_tol * max(1.0, abs(value)):
                self.hits[name] = 0
                continue
            self.hits[name] = self.hits.get(name, 0) + 1
            if self.hits[name] < self.patience:
                continue
            self.warned.add(name)
            geometry = "" if uniformity is None else f", projection uniformity {uniformity:.3f}"
            message = (
                f"objectives.{name} ({term.objective}): loss {loss:.4f} sits at its collapse "
                f"value {value:.4f} (the loss when every embedding is the same point{geometry}): "
                "the embeddings have probably collapsed. Check the objective's params (e.g. too "
                "few hard negatives), the learning rate and the augmentations"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            messages.append(message)
        return messages
