"""Every softmax-family objective against its peers and a naive dense PyTorch version.

``contrastkit bench objectives`` times forward + backward of each objective of :data:`OBJECTIVES`
at several batch sizes, next to the peer packages that implement the same loss and a naive
dense computation (the ``n × m`` logits materialised, autograd for the gradient), and records
peak memory and the share of the matrix-product roofline.

Method (the machine is shared, so timings are noisy):

* one fresh process per ``(objective, B)``; inside it every implementation runs once (warm-up
  and memory), then in **interleaved rounds** (each round times every implementation once, in a
  rotating order), so load changes hit all of them alike; the median over rounds is reported;
* memory: peak resident set size during a separate, untimed step of the implementation, above
  the resident size just before it (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``),
  with glibc's mmap threshold fixed at 128 KiB for that step so that large tensors are unmapped
  when freed and earlier implementations' memory is not reused by later ones (``tracemalloc``
  does not see torch's allocations at all); timed steps run with a 32 MiB threshold, the
  steady state of glibc's default;
* roofline: the FLOPs of the matrix products the loss needs at least (``S = A Cᵀ`` and the two
  products of its backward, ``2·n·m·d`` each; two when the candidates carry no gradient)
  divided by the matrix-product rate measured in the same process just before, over the
  measured time;
* the load average is recorded before and after every configuration.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Inputs = dict[str, Any]
LossFn = Callable[[Inputs], Tensor]
TAU = 0.1
SUPCON_CLASSES = 100
MV_VIEWS = 3
CWCL_SCALE = 4.0
DCLW_SIGMA = 0.5
HARD_ALPHA = 0.0819  # the paper's CIFAR quantile (explicit: the library default may change)

#: Default grid. B = 16384 only where the CPU time allows (see ``--max-config-s``).
BATCHES = (256, 1024, 4096, 8192, 16384)
DIM = 128


@dataclass(frozen=True)
class Objective:
    """One benchmarked loss.

    Attributes:
        name: table name.
        rows: ``B -> n``, rows of the similarity matrix ``S`` in contrastkit's formulation.
        cols: ``B -> m``, its columns.
        products: matrix products of ``S`` the loss needs at least (3; 2 with constant
            candidates).
        inputs: ``(B, d, generator) -> inputs`` (leaf tensors that get a gradient under ``"grad"``).
        impls: implementation name -> builder of its loss function.
        peers: which of ``impls`` are peer packages.
        same_value: implementations whose loss value must equal contrastkit's (checked by the
            tests at a small size); others compute a different value at the same cost.
        note: a line for the results page.
    """

    name: str
    rows: Callable[[int], int]
    cols: Callable[[int], int]
    inputs: Callable[[int, int, torch.Generator], Inputs]
    impls: dict[str, Callable[[], LossFn]]
    peers: tuple[str, ...] = ()
    same_value: tuple[str, ...] = ()
    products: int = 3
    note: str = ""


# ------------------------------------------------------------------------------------------------
# Inputs


def _pair(batch: int, dim: int, g: torch.Generator) -> Inputs:
    a = torch.randn(batch, dim, generator=g).requires_grad_()
    b = torch.randn(batch, dim, generator=g).requires_grad_()
    return {"a": a, "b": b, "grad": [a, b]}


def _views(views: int) -> Callable[[int, int, torch.Generator], Inputs]:
    def make(batch: int, dim: int, g: torch.Generator) -> Inputs:
        x = torch.randn(batch, views, dim, generator=g).requires_grad_()
        labels = torch.randint(0, SUPCON_CLASSES, (batch,), generator=g)
        return {"views": x, "labels": labels, "grad": [x]}

    return make


def _with_keys(batch: int, dim: int, g: torch.Generator) -> Inputs:
    out = _pair(batch, dim, g)
    out["keys"] = F.normalize(torch.randn(batch, dim, generator=g), dim=-1)
    return out


def _with_queue(batch: int, dim: int, g: torch.Generator) -> Inputs:
    out = _pair(batch, dim, g)
    out["queue"] = F.normalize(torch.randn(batch, dim, generator=g), dim=-1)  # K = B
    return out


# ------------------------------------------------------------------------------------------------
# Implementations. contrastkit and naive dense versions are written here; peers are called with
# the conventions of tests/losses/test_parity_core.py.


def _peer(dist: str) -> Any:
    from contrastkit.bench.peers import import_peer

    return import_peer(dist)


def _lse_rows(logits: Tensor) -> Tensor:
    return torch.logsumexp(logits, dim=1)


def _ck_info_nce() -> LossFn:
    from contrastkit.losses.info_nce import info_nce

    return lambda x: info_nce(x["a"], x["b"], temperature=TAU)


def _naive_info_nce() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        logits = F.normalize(x["a"], dim=-1) @ F.normalize(x["b"], dim=-1).T / TAU
        return F.cross_entropy(logits, torch.arange(logits.shape[0]))

    return loss


def _infonce_pytorch_one() -> LossFn:
    fn = _peer("info-nce-pytorch").InfoNCE(temperature=TAU)
    return lambda x: fn(x["a"], x["b"])


def _ck_clip() -> LossFn:
    from contrastkit.losses.clip import clip_loss

    return lambda x: clip_loss(x["a"], x["b"], temperature=TAU)


def _naive_clip() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        logits = F.normalize(x["a"], dim=-1) @ F.normalize(x["b"], dim=-1).T / TAU
        labels = torch.arange(logits.shape[0])
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    return loss


def _open_clip_clip() -> LossFn:
    fn = _peer("open-clip-torch").ClipLoss()
    scale = torch.tensor(1.0 / TAU)
    return lambda x: fn(F.normalize(x["a"], dim=-1), F.normalize(x["b"], dim=-1), scale)


def _infonce_pytorch_sym() -> LossFn:
    fn = _peer("info-nce-pytorch").InfoNCE(temperature=TAU)
    return lambda x: 0.5 * (fn(x["a"], x["b"]) + fn(x["b"], x["a"]))


def _two_view_logits(x: Inputs) -> tuple[Tensor, Tensor, int]:
    """``(2B, 2B)`` logits of ``[a; b]`` with the diagonal at -inf, and the partner index."""
    z = F.normalize(torch.cat([x["a"], x["b"]]), dim=-1)
    batch = x["a"].shape[0]
    logits = (z @ z.T / TAU).fill_diagonal_(float("-inf"))
    partner = torch.arange(2 * batch).roll(batch)
    return logits, partner, batch


def _ck_nt_xent() -> LossFn:
    from contrastkit.losses.nt_xent import nt_xent

    return lambda x: nt_xent(x["a"], x["b"], temperature=TAU)


def _naive_nt_xent() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        logits, partner, _ = _two_view_logits(x)
        return F.cross_entropy(logits, partner)

    return loss


def _lightly_nt_xent() -> LossFn:
    fn = _peer("lightly").NTXentLoss(temperature=TAU)
    return lambda x: fn(x["a"], x["b"])


def _pml_nt_xent() -> LossFn:
    fn = _peer("pytorch-metric-learning").NTXentLoss(temperature=TAU)

    def loss(x: Inputs) -> Tensor:
        batch = x["a"].shape[0]
        return fn(torch.cat([x["a"], x["b"]]), torch.arange(batch).repeat(2))  # type: ignore[no-any-return]

    return loss


def _ck_dcl() -> LossFn:
    from contrastkit.losses.dcl import dcl

    return lambda x: dcl(x["a"], x["b"], temperature=TAU)


def _naive_dcl(weighted: bool) -> Callable[[], LossFn]:
    def build() -> LossFn:
        def loss(x: Inputs) -> Tensor:
            logits, partner, batch = _two_view_logits(x)
            rows = torch.arange(2 * batch)
            positive = logits[rows, partner]
            negatives = logits.index_put((rows, partner), torch.tensor(float("-inf")))
            weight = torch.ones(())
            if weighted:  # von Mises-Fisher weights, detached (Yeh et al. 2022)
                za, zb = F.normalize(x["a"], dim=-1), F.normalize(x["b"], dim=-1)
                cos = (za * zb).sum(-1).detach()
                weight = (2 - batch * torch.softmax(cos / DCLW_SIGMA, dim=0)).repeat(2)
            return (_lse_rows(negatives) - weight * positive).mean()

        return loss

    return build


def _lightly_dcl() -> LossFn:
    fn = _peer("lightly").DCLLoss(temperature=TAU)
    return lambda x: fn(x["a"], x["b"])


def _ck_dclw() -> LossFn:
    from contrastkit.losses.dcl import dclw

    return lambda x: dclw(x["a"], x["b"], temperature=TAU, sigma=DCLW_SIGMA)


def _lightly_dclw() -> LossFn:
    fn = _peer("lightly").DCLWLoss(temperature=TAU, sigma=DCLW_SIGMA)
    return lambda x: fn(x["a"], x["b"])


def _ck_supcon() -> LossFn:
    from contrastkit.losses.supcon import supcon

    return lambda x: supcon(x["views"], x["labels"], temperature=TAU)


def _naive_supcon() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        views = x["views"]
        z = F.normalize(views.reshape(-1, views.shape[-1]), dim=-1)
        labels = x["labels"].repeat_interleave(views.shape[1])
        logits = (z @ z.T / TAU).fill_diagonal_(float("-inf"))
        log_prob = (logits - _lse_rows(logits)[:, None]).fill_diagonal_(0.0)
        positive = (labels[:, None] == labels[None, :]).fill_diagonal_(False).float()
        count = positive.sum(1)
        per_anchor = -(positive * log_prob).sum(1) / count.clamp(min=1)
        out: Tensor = per_anchor[count > 0].mean()
        return out

    return loss


def _pml_supcon() -> LossFn:
    fn = _peer("pytorch-metric-learning").SupConLoss(temperature=TAU)

    def loss(x: Inputs) -> Tensor:
        views = x["views"]
        flat = views.reshape(-1, views.shape[-1])
        return fn(flat, x["labels"].repeat_interleave(views.shape[1]))  # type: ignore[no-any-return]

    return loss


def _ck_cwcl() -> LossFn:
    from contrastkit.losses.cwcl import cwcl

    def weight(cos: Tensor) -> Tensor:
        return torch.exp(CWCL_SCALE * cos)

    return lambda x: cwcl(
        x["a"], x["b"], weight_embeddings=x["keys"], temperature=TAU, weight_fn=weight
    )


def _naive_cwcl() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        logits = F.normalize(x["a"], dim=-1) @ F.normalize(x["b"], dim=-1).T / TAU
        targets = torch.softmax(CWCL_SCALE * x["keys"] @ x["keys"].T, dim=1)  # symmetric
        rows = -(targets * torch.log_softmax(logits, dim=1)).sum(1).mean()
        cols = -(targets * torch.log_softmax(logits.T, dim=1)).sum(1).mean()
        return 0.5 * (rows + cols)

    return loss


def _open_clip_distill() -> LossFn:
    # CWCL with weights exp(s·cos) is open_clip's distillation term with the frozen keys as the
    # teacher's features of both modalities (test_cwcl_soft_labels_match_open_clip_distillation);
    # only that term is computed (not DistillClipLoss's extra CLIP loss).
    fn = _peer("open-clip-torch").DistillClipLoss()
    scale, teacher_scale = torch.tensor(1.0 / TAU), torch.tensor(CWCL_SCALE)

    def loss(x: Inputs) -> Tensor:
        na, nb = F.normalize(x["a"], dim=-1), F.normalize(x["b"], dim=-1)
        student_i, student_t = fn.get_logits(na, nb, scale)
        teacher_i, teacher_t = fn.get_logits(x["keys"], x["keys"], teacher_scale)
        return 0.5 * (fn.dist_loss(teacher_i, student_i) + fn.dist_loss(teacher_t, student_t))  # type: ignore[no-any-return]

    return loss


def _ck_siglip() -> LossFn:
    from contrastkit.losses.siglip import siglip

    return lambda x: siglip(x["a"], x["b"], temperature=TAU, bias=-10.0)


def _naive_siglip() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        logits = F.normalize(x["a"], dim=-1) @ F.normalize(x["b"], dim=-1).T / TAU - 10.0
        signs = 2 * torch.eye(logits.shape[0]) - 1
        return -F.logsigmoid(signs * logits).sum() / logits.shape[0]

    return loss


def _open_clip_siglip() -> LossFn:
    fn = _peer("open-clip-torch").SigLipLoss()
    scale, bias = torch.tensor(1.0 / TAU), torch.tensor(-10.0)
    return lambda x: fn(F.normalize(x["a"], dim=-1), F.normalize(x["b"], dim=-1), scale, bias)


def _ck_mv_info_nce() -> LossFn:
    from contrastkit.losses.multi_view import mv_info_nce

    return lambda x: mv_info_nce(x["views"], temperature=TAU)


def _naive_mv_info_nce() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        z = F.normalize(x["views"], dim=-1)  # (B, V, d)
        batch, views, dim = z.shape
        flat = z.transpose(0, 1).reshape(views * batch, dim)
        logits = (flat @ flat.T / TAU).fill_diagonal_(float("-inf"))
        denominator = torch.logsumexp(_lse_rows(logits).view(views, batch), dim=0)
        pair = torch.einsum("bvd,bwd->bvw", z, z) / TAU
        off = ~torch.eye(views, dtype=torch.bool)
        return (denominator - torch.logsumexp(pair[:, off], dim=1)).mean()

    return loss


def _ck_sogclr() -> LossFn:
    from contrastkit.losses.sogclr import sogclr_loss

    def loss(x: Inputs) -> Tensor:
        batch = x["a"].shape[0]
        log_u, seen = torch.zeros(batch), torch.zeros(batch, dtype=torch.bool)
        return sogclr_loss(x["a"], x["b"], log_u, seen, temperature=TAU, gamma=0.9).loss

    return loss


def _naive_sogclr() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        # SogCLR's surrogate at the first visit (u = the batch estimate g, weight g/u = 1):
        # the gradient of τ·lse over the 2B - 2 negatives, minus the positive logit.
        logits, partner, batch = _two_view_logits(x)
        rows = torch.arange(2 * batch)
        positive = logits[rows, partner] * TAU
        negatives = logits.index_put((rows, partner), torch.tensor(float("-inf")))
        lse = _lse_rows(negatives)
        log_g = lse.detach() - math.log(2 * (batch - 1))
        per_dir = TAU * log_g - positive + TAU * (lse - lse.detach())
        return (0.5 * (per_dir[:batch] + per_dir[batch:])).mean()

    return loss


def _libauc_sogclr() -> LossFn:
    contrastive = _peer("libauc")
    holder: dict[int, Any] = {}

    def loss(x: Inputs) -> Tensor:
        batch = x["a"].shape[0]
        if batch not in holder:
            holder[batch] = contrastive.GCLoss_v1(N=batch, tau=TAU, device=torch.device("cpu"))
        return holder[batch](x["a"], x["b"], torch.arange(batch))  # type: ignore[no-any-return]

    return loss


def _ck_hard() -> LossFn:
    from contrastkit.losses.hard_contrastive import hard_contrastive_loss

    return lambda x: hard_contrastive_loss(x["a"], x["b"], temperature=TAU, alpha=HARD_ALPHA)


def _naive_hard() -> LossFn:
    from contrastkit.losses.hard_contrastive import num_hard_negatives

    def loss(x: Inputs) -> Tensor:
        batch = x["a"].shape[0]
        logits = F.normalize(x["a"], dim=-1) @ F.normalize(x["b"], dim=-1).T / TAU
        positive = logits.diagonal()
        k = num_hard_negatives(HARD_ALPHA, batch - 1)
        hard = logits.masked_fill(torch.eye(batch, dtype=torch.bool), float("-inf")).topk(k)
        return (torch.logaddexp(_lse_rows(hard.values), positive) - positive).mean()

    return loss


def _ck_moco() -> LossFn:
    from contrastkit.losses.moco import moco_loss

    return lambda x: moco_loss(x["a"], x["b"].detach(), x["queue"], temperature=TAU)


def _naive_moco() -> LossFn:
    def loss(x: Inputs) -> Tensor:
        q, k = F.normalize(x["a"], dim=-1), F.normalize(x["b"].detach(), dim=-1)
        logits = torch.cat([(q * k).sum(-1, keepdim=True), q @ x["queue"].T], dim=1) / TAU
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))

    return loss


def _lightly_moco() -> LossFn:
    # lightly's NTXentLoss with a memory bank is MoCo's loss; its bank starts random and is
    # refilled with the keys after each call, so its value differs (same cost: K = B).
    lightly = _peer("lightly")
    fn: dict[int, Any] = {}

    def loss(x: Inputs) -> Tensor:
        batch, dim = x["a"].shape
        if batch not in fn:
            fn[batch] = lightly.NTXentLoss(temperature=TAU, memory_bank_size=(batch, dim))
        return fn[batch](x["a"], x["b"].detach())  # type: ignore[no-any-return]

    return loss


def _same(b: int) -> int:
    return b


def _double(b: int) -> int:
    return 2 * b


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in [
        Objective(
            "InfoNCE",
            _same,
            _same,
            _pair,
            {
                "contrastkit": _ck_info_nce,
                "naive-dense": _naive_info_nce,
                "info-nce-pytorch": _infonce_pytorch_one,
            },
            peers=("info-nce-pytorch",),
            same_value=("naive-dense", "info-nce-pytorch"),
            note="one direction a→b",
        ),
        Objective(
            "CLIP",
            _same,
            _same,
            _pair,
            {
                "contrastkit": _ck_clip,
                "naive-dense": _naive_clip,
                "open_clip": _open_clip_clip,
                "info-nce-pytorch": _infonce_pytorch_sym,
            },
            peers=("open_clip", "info-nce-pytorch"),
            same_value=("naive-dense", "open_clip", "info-nce-pytorch"),
            note="symmetric InfoNCE",
        ),
        Objective(
            "NT-Xent",
            _double,
            _double,
            _pair,
            {
                "contrastkit": _ck_nt_xent,
                "naive-dense": _naive_nt_xent,
                "lightly": _lightly_nt_xent,
                "pytorch-metric-learning": _pml_nt_xent,
            },
            peers=("lightly", "pytorch-metric-learning"),
            same_value=("naive-dense", "lightly", "pytorch-metric-learning"),
            note="B pairs → 2B × 2B logits",
        ),
        Objective(
            "DCL",
            _double,
            _double,
            _pair,
            {
                "contrastkit": _ck_dcl,
                "naive-dense": _naive_dcl(weighted=False),
                "lightly": _lightly_dcl,
            },
            peers=("lightly",),
            same_value=("naive-dense", "lightly"),
            note="B pairs → 2B × 2B logits",
        ),
        Objective(
            "DCLW",
            _double,
            _double,
            _pair,
            {
                "contrastkit": _ck_dclw,
                "naive-dense": _naive_dcl(weighted=True),
                "lightly": _lightly_dclw,
            },
            peers=("lightly",),
            same_value=("naive-dense", "lightly"),
            note=f"σ = {DCLW_SIGMA}; B pairs → 2B × 2B logits",
        ),
        Objective(
            "SupCon",
            _double,
            _double,
            _views(2),
            {
                "contrastkit": _ck_supcon,
                "naive-dense": _naive_supcon,
                "pytorch-metric-learning": _pml_supcon,
            },
            peers=("pytorch-metric-learning",),
            same_value=("naive-dense", "pytorch-metric-learning"),
            note=f"B samples × 2 views, {SUPCON_CLASSES} classes → 2B × 2B logits",
        ),
        Objective(
            "CWCL",
            _same,
            _same,
            _with_keys,
            {
                "contrastkit": _ck_cwcl,
                "naive-dense": _naive_cwcl,
                "open_clip": _open_clip_distill,
            },
            peers=("open_clip",),
            same_value=("naive-dense", "open_clip"),
            note=f"weights exp({CWCL_SCALE:g}·cos) of frozen keys (= open_clip's distillation "
            "term)",
        ),
        Objective(
            "SigLIP",
            _same,
            _same,
            _pair,
            {
                "contrastkit": _ck_siglip,
                "naive-dense": _naive_siglip,
                "open_clip": _open_clip_siglip,
            },
            peers=("open_clip",),
            same_value=("naive-dense", "open_clip"),
            note="sigmoid loss (not an engine log-sum-exp; its own tiled softplus)",
        ),
        Objective(
            "MV-InfoNCE",
            lambda b: MV_VIEWS * b,
            lambda b: MV_VIEWS * b,
            _views(MV_VIEWS),
            {"contrastkit": _ck_mv_info_nce, "naive-dense": _naive_mv_info_nce},
            same_value=("naive-dense",),
            note=f"B samples × {MV_VIEWS} views → {MV_VIEWS}B × {MV_VIEWS}B logits; no peer",
        ),
        Objective(
            "SogCLR",
            _double,
            _double,
            _pair,
            {
                "contrastkit": _ck_sogclr,
                "naive-dense": _naive_sogclr,
                "LibAUC": _libauc_sogclr,
            },
            peers=("LibAUC",),
            same_value=("naive-dense",),
            note="first visit of every index; LibAUC's GCLoss_v1 value is another surrogate "
            "(same gradient up to a factor 2)",
        ),
        Objective(
            "HardContrastive",
            _same,
            _same,
            _pair,
            {"contrastkit": _ck_hard, "naive-dense": _naive_hard},
            same_value=("naive-dense",),
            note=f"Wang & Liu 2021, α = {HARD_ALPHA} of the in-batch negatives; no peer",
        ),
        Objective(
            "MoCo",
            _same,
            _same,
            _with_queue,
            {
                "contrastkit": _ck_moco,
                "naive-dense": _naive_moco,
                "lightly": _lightly_moco,
            },
            peers=("lightly",),
            same_value=("naive-dense",),
            products=2,
            note="queue of K = B constant keys (no gradient: 2 products); lightly = "
            "NTXentLoss(memory_bank_size) with its own queue",
        ),
    ]
}

#: Predicted bytes per logit pair of the dense implementations (their ``n × m`` temporaries:
#: logits, softmax, gradient, ...; int64 pair indices for pytorch-metric-learning and LibAUC).
DENSE_BYTES_PER_PAIR = {"pytorch-metric-learning": 48.0, "LibAUC": 28.0}
DEFAULT_BYTES_PER_PAIR = 20.0


def predicted_dense_gib(objective: Objective, impl: str, batch: int) -> float:
    """Predicted peak memory of a dense implementation (0 for contrastkit)."""
    if impl == "contrastkit":
        return 0.0
    pairs = objective.rows(batch) * objective.cols(batch)
    return pairs * DENSE_BYTES_PER_PAIR.get(impl, DEFAULT_BYTES_PER_PAIR) / 2**30


# ------------------------------------------------------------------------------------------------
# Worker: one (objective, B) per process.


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def matmul_gflops(dim: int, size: int = 2048, reps: int = 5) -> float:
    """Matrix-product rate of this process now: ``(size × dim) @ (dim × size)``, median of reps.

    The median (not the best) so that the rate is taken under the same load as the medians of
    the timed steps it is compared with.
    """
    x, y = torch.randn(size, dim), torch.randn(size, dim)
    out = torch.empty(size, size)
    torch.mm(x, y.T, out=out)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(x, y.T, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size * size * dim / statistics.median(times) / 1e9


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold (and a trim threshold twice as large); False if not glibc.

    Memory steps use 128 KiB, so that every large tensor is its own mapping, unmapped when freed:
    the peak RSS of a step is then its own. Timed steps use 32 MiB, the largest value glibc's
    default dynamic threshold reaches, so that tensor buffers are reused from the heap as in an
    ordinary training process (a 128 KiB threshold would make every step page-fault its
    temporaries afresh, penalising implementations with many mid-sized temporaries).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, nbytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2 * nbytes)
        # Hand free heap pages back: chunks kept from the timed (32 MiB) steps would otherwise be
        # reused by a memory step without raising the RSS (an undercount).
        libc.malloc_trim(0)
        return bool(ok)
    except (OSError, AttributeError):
        return False


MEMORY_MMAP_THRESHOLD = 128 * 1024
TIMING_MMAP_THRESHOLD = 32 * 2**20


def _step(fn: LossFn, inputs: Inputs) -> float:
    for t in inputs["grad"]:
        t.grad = None
    loss = fn(inputs)
    loss.backward()  # type: ignore[no-untyped-call]
    return float(loss.detach())


def run_config(
    objective_name: str,
    batch: int,
    dim: int,
    impls: list[str],
    *,
    min_rounds: int = 3,
    min_total_s: float = 0.5,
    max_rounds: int = 100,
) -> dict[str, Any]:
    """Run the implementations ``impls`` of one objective at one ``B``, interleaved.

    Returns a JSON-able dict: per implementation its median time, all times, peak extra memory
    and loss value (or the error that stopped it), plus the matmul rate and load averages.
    """
    objective = OBJECTIVES[objective_name]
    g = torch.Generator().manual_seed(batch)
    inputs = objective.inputs(batch, dim, g)
    load_before = os.getloadavg()
    gflops = matmul_gflops(dim)
    fns: dict[str, LossFn] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in impls:
        try:
            fns[name] = objective.impls[name]()
        except Exception as exc:  # a peer that cannot be imported here: say why
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    can_reset = _reset_hwm()
    only_memory = min_rounds == 0
    _set_mmap_threshold(MEMORY_MMAP_THRESHOLD if only_memory else TIMING_MMAP_THRESHOLD)
    for name, fn in list(fns.items()):  # warm-up step (first calls, lazy imports, kernels)
        gc.collect()
        base = _rss_bytes()
        _reset_hwm()
        start = time.perf_counter()
        try:
            value = _step(fn, inputs)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            del fns[name]
            continue
        out[name] = {"loss": value, "first_s": time.perf_counter() - start, "times_s": []}
        if only_memory:  # a memory check: one step
            peak = max(0, _hwm_bytes() - base) if can_reset else None
            out[name]["peak_extra_mib"] = None if peak is None else peak / 2**20
    if not only_memory:  # memory step (not timed): peak RSS above the RSS just before
        _set_mmap_threshold(MEMORY_MMAP_THRESHOLD)
        for name, fn in fns.items():
            gc.collect()
            _set_mmap_threshold(MEMORY_MMAP_THRESHOLD)  # trims what the last step left free
            base = _rss_bytes()
            _reset_hwm()
            _step(fn, inputs)
            peak = max(0, _hwm_bytes() - base) if can_reset else None
            out[name]["peak_extra_mib"] = None if peak is None else peak / 2**20
        _set_mmap_threshold(TIMING_MMAP_THRESHOLD)
    names = list(fns)

    def wants_more(name: str) -> bool:  # min_rounds steps, then until they add up to min_total_s
        times = out[name]["times_s"]
        return len(times) < min_rounds or (len(times) < max_rounds and sum(times) < min_total_s)

    rounds = 0
    while active := [n for n in names if wants_more(n)]:  # slow ones stop after min_rounds
        order = active[rounds % len(active) :] + active[: rounds % len(active)]
        for name in order:
            start = time.perf_counter()
            _step(fns[name], inputs)
            out[name]["times_s"].append(time.perf_counter() - start)
        rounds += 1
    for name in names:  # without timed rounds (a memory check) the warm-up step is the time
        out[name]["median_s"] = statistics.median(out[name]["times_s"] or [out[name]["first_s"]])
    return {
        "objective": objective_name,
        "B": batch,
        "d": dim,
        "rows": objective.rows(batch),
        "cols": objective.cols(batch),
        "matmul_gflops": gflops,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "impls": out,
    }


# ------------------------------------------------------------------------------------------------
# Driver


def _predict_s(
    prev: dict[str, Any] | None, objective: Objective, batch: int, impls: list[str]
) -> float:
    """Predicted time of ``impls`` at ``B`` from the previous ``B`` (times scale with n·m).

    At large ``B`` a configuration runs 1 warm-up and 3 timed steps per implementation.
    """
    if prev is None:
        return 0.0
    ratio = (objective.rows(batch) * objective.cols(batch)) / (prev["rows"] * prev["cols"])
    per_step = [prev["impls"].get(i, {}).get("median_s") for i in impls]
    known = [t for t in per_step if t is not None]
    if not known:
        return 0.0
    worst = max(known)  # an implementation without a previous time: assume the slowest
    return float(4 * ratio * sum(t if t is not None else worst for t in per_step))


def run_objective(
    name: str, batches: list[int], dim: int, max_dense_gib: float, max_config_s: float
) -> None:
    """Worker: every ``B`` of one objective, ascending; one JSON line per ``B`` on stdout."""
    objective = OBJECTIVES[name]
    prev: dict[str, Any] | None = None
    for batch in sorted(batches):
        record: dict[str, Any] = {"objective": name, "batch": batch, "skipped": {}, "note": ""}
        impls = []
        for impl in objective.impls:
            need = predicted_dense_gib(objective, impl, batch)
            if need > max_dense_gib:
                record["skipped"][impl] = f"skipped: needs ~{need:.1f} GiB"
            else:
                impls.append(impl)
        predicted = _predict_s(prev, objective, batch, impls)
        if predicted > max_config_s:  # drop the slowest implementations first, never ours
            last = prev or {"impls": {}}

            def drop_order(impl: str, last: dict[str, Any] = last) -> tuple[bool, float]:
                time_s = last["impls"].get(impl, {}).get("median_s", math.inf)
                return impl != "naive-dense", -float(time_s)  # naive first, then slow peers

            for impl in sorted((i for i in impls if i != "contrastkit"), key=drop_order):
                impls.remove(impl)
                record["skipped"][impl] = f"skipped: predicted > {max_config_s:.0f} s"
                predicted = _predict_s(prev, objective, batch, impls)
                if predicted <= max_config_s:
                    break
        if predicted > max_config_s:
            record["note"] = f"skipped: predicted {predicted:.0f} s > {max_config_s:.0f} s"
            record["result"] = {}
        else:
            start = time.perf_counter()
            record["result"] = run_config(name, batch, dim, impls)
            record["wall_s"] = time.perf_counter() - start
            prev = record["result"]
        print(json.dumps(record), flush=True)


def _run_objective_worker(
    args: list[str], timeout: float, threads: int
) -> tuple[list[dict[str, Any]], str]:
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    cmd = [sys.executable, "-m", "contrastkit.bench.objectives", "--worker", *args]
    error = ""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        stdout = out.decode() if isinstance(out, bytes) else out
        stderr, code = "", 0
        error = f"timeout > {timeout:.0f} s"
    if code != 0:
        tail = (stderr.strip().splitlines() or ["?"])[-1]
        error = "failed: " + textwrap.shorten(tail, 160, placeholder=" …")
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return records, error


def main(argv: list[str]) -> int:
    """``contrastkit bench objectives``: run the grid, write ``objectives_bench.{md,json,png}``."""
    parser = argparse.ArgumentParser(prog="contrastkit bench objectives", description=__doc__)
    parser.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument(
        "--max-dense-gib",
        type=float,
        default=4.0,
        help="skip dense implementations predicted to need more memory than this",
    )
    parser.add_argument(
        "--max-config-s",
        type=float,
        default=60.0,
        help="skip implementations (naive dense, then the slowest peers; contrastkit last) of "
        "a configuration "
        "predicted from the previous B to take longer than this",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per objective")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="objectives_bench")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--memory-check",
        nargs="*",
        choices=list(OBJECTIVES),
        default=[],
        help="objectives whose contrastkit extra memory is measured in one step at "
        "--memory-batch × --memory-dim (the issue's target: B = 32768, d = 512)",
    )
    parser.add_argument("--memory-batch", type=int, default=32768)
    parser.add_argument("--memory-dim", type=int, default=512)
    args = parser.parse_args(argv)
    names = args.objectives or list(OBJECTIVES)
    started = time.perf_counter()
    configs: list[dict[str, Any]] = []
    for name in names:
        start = time.perf_counter()
        worker_args = [
            "objective",
            name,
            str(args.dim),
            str(args.max_dense_gib),
            str(args.max_config_s),
            *map(str, args.batch_sizes),
        ]
        records, error = _run_objective_worker(worker_args, args.timeout, args.threads)
        done = {r["batch"] for r in records}
        for batch in sorted(args.batch_sizes):
            if batch not in done:  # stopped by a failure or the timeout
                records.append(
                    {"objective": name, "batch": batch, "skipped": {}, "note": error, "result": {}}
                )
        configs += sorted(records, key=lambda r: r["batch"])
        for r in sorted(records, key=lambda r: r["batch"]):
            summary = ", ".join(
                f"{i} {x['median_s'] * 1e3:.1f} ms"
                for i, x in (r["result"] or {}).get("impls", {}).items()
                if "median_s" in x
            )
            print(f"{name:<16} B={r['batch']:<6} {summary or r['note']}", file=sys.stderr)
        print(
            f"{name}: {time.perf_counter() - start:.0f} s "
            f"(total {time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    memory_rows = []
    for name in args.memory_check:
        start = time.perf_counter()
        records, error = _run_objective_worker(
            ["memory", name, str(args.memory_batch), str(args.memory_dim)],
            args.timeout,
            args.threads,
        )
        row: dict[str, Any] = {"objective": name, "wall_s": time.perf_counter() - start}
        if not records:
            row["error"] = error
        else:
            row.update(records[0]["impls"]["contrastkit"])
            row["load"] = records[0]["load_before"]
        memory_rows.append(row)
        print(f"memory check {name}: {row} ", file=sys.stderr)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "contrastkit bench objectives " + " ".join(argv),
        "dim": args.dim,
        "threads": args.threads,
        "wall_s": time.perf_counter() - started,
        "load_end": os.getloadavg(),
    }
    from contrastkit.bench.objectives_report import render, write_plot

    args.out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"meta": meta, "configs": configs}
    if memory_rows:
        payload["memory_check"] = {
            "B": args.memory_batch,
            "d": args.memory_dim,
            "rows": memory_rows,
        }
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=1))
    table = render(payload)
    (args.out / f"{args.name}.md").write_text(table)
    if not args.no_plot:
        write_plot(payload, args.out / "objectives_scaling.png")
    print(table)
    return 0


def worker_main(argv: list[str]) -> int:
    """``--worker objective NAME D GIB SECONDS B...`` or ``--worker memory NAME B D``."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if argv[0] == "memory":  # one contrastkit step: its extra memory
        name, batch, dim = argv[1], int(argv[2]), int(argv[3])
        result = run_config(name, batch, dim, ["contrastkit"], min_rounds=0, min_total_s=0.0)
        print(json.dumps(result), flush=True)
        return 0
    name, dim, gib, seconds = argv[1], int(argv[2]), float(argv[3]), float(argv[4])
    run_objective(name, [int(b) for b in argv[5:]], dim, gib, seconds)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        raise SystemExit(worker_main(sys.argv[2:]))
    raise SystemExit(main(sys.argv[1:]))
