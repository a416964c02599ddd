"""Parity of the core objectives with the peer packages that implement them.

Each test compares values AND gradients w.r.t. every input (and w.r.t. a tensor temperature /
bias where the peer takes one) in float64, where every peer here runs, to ``rtol=1e-9,
atol=1e-11``. Each test also runs a negative control: the peer's gradient on a perturbed input
must differ from ours on the original input by far more than the tolerance, so parity cannot
pass vacuously (e.g. through an all-zero or input-independent gradient).

Peers (versions pinned by scripts/install_peers.sh; see tests/peers.py):
  open_clip 3.3.0 ``ClipLoss`` / ``SigLipLoss`` (and ``DistillClipLoss`` for CWCL's soft labels);
  lightly 1.6.0 ``NTXentLoss`` / ``DCLLoss`` / ``DCLWLoss``; pytorch-metric-learning 2.9.0
  ``NTXentLoss`` / ``SupConLoss``; info-nce-pytorch 0.1.4 ``InfoNCE``.
Convention adaptations are stated next to each comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from peers import load_info_nce, load_lightly_loss, load_open_clip_loss, load_pml
from torch import Tensor

from contrastkit.losses.clip import CLIPLoss, clip_loss
from contrastkit.losses.cwcl import cwcl
from contrastkit.losses.dcl import dcl, dclw
from contrastkit.losses.info_nce import info_nce
from contrastkit.losses.nt_xent import nt_xent
from contrastkit.losses.siglip import siglip
from contrastkit.losses.supcon import supcon

DT = torch.float64
RTOL, ATOL = 1e-9, 1e-11
# A perturbation this size moves gradients by >> ATOL; the control asserts a gap of at least:
CONTROL_GAP = 1e-4
CHUNKS = [None, 3]  # dense path, and the tiled path with an uneven last tile

LossFn = Callable[..., Tensor]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=DT)


def _value_and_grads(fn: LossFn, inputs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Loss value and its gradients w.r.t. fresh leaf copies of ``inputs``.

    A non-scalar loss (``reduction='none'``) is contracted with fixed random weights so that the
    gradient of every entry is exercised, not only their sum.
    """
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    total = out if out.ndim == 0 else (out * _randn(*out.shape, seed=99)).sum()
    grads = torch.autograd.grad(total, leaves)
    return out.detach(), [g.detach() for g in grads]


def _max_diff(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(xs, ys, strict=True))


def assert_parity(
    ours: LossFn,
    peer: LossFn,
    inputs: Sequence[Tensor],
    *,
    perturb: int = 0,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> None:
    """Values and gradients of ``ours`` and ``peer`` agree on ``inputs``; negative control.

    The control perturbs ``inputs[perturb]`` and checks that the peer's gradient there is far
    from ours on the unperturbed input.
    """
    v_ours, g_ours = _value_and_grads(ours, inputs)
    v_peer, g_peer = _value_and_grads(peer, inputs)
    assert v_ours.shape == v_peer.shape
    torch.testing.assert_close(v_ours, v_peer, rtol=rtol, atol=atol, msg="loss values differ")
    for i, (go, gp) in enumerate(zip(g_ours, g_peer, strict=True)):
        torch.testing.assert_close(
            go, gp, rtol=rtol, atol=atol, msg=lambda m, i=i: f"gradient of input {i}: {m}"
        )
    # Negative control.
    moved = [x.detach().clone() for x in inputs]
    moved[perturb] = moved[perturb] + 0.3 * _randn(*moved[perturb].shape, seed=1234)
    v_moved, g_moved = _value_and_grads(peer, moved)
    assert _max_diff(g_ours, g_moved) > CONTROL_GAP
    assert float((v_ours - v_moved).abs().max()) > CONTROL_GAP


# --------------------------------------------------------------------------------------------
# info-nce-pytorch InfoNCE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
def test_info_nce_matches_info_nce_pytorch_in_batch(
    chunk_size: int | None, reduction: str, temperature: float
) -> None:
    # Same convention: cosine logits / τ, in-batch negatives are the other rows of b,
    # positive in the denominator, reduction as torch.nn.functional.
    peer_mod = load_info_nce()
    peer = peer_mod.InfoNCE(temperature=temperature, reduction=reduction)
    a, b = _randn(7, 5, seed=0), _randn(7, 5, seed=1)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return info_nce(a, b, temperature=temperature, reduction=reduction, chunk_size=chunk_size)

    assert_parity(ours, peer, [a, b])
    assert_parity(ours, peer, [a, b], perturb=1)


def _others(b: Tensor) -> Tensor:
    """``(B, B-1, d)``: for each row i, the rows of ``b`` other than i (in order)."""
    n = b.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool)
    return b.unsqueeze(0).expand(n, n, b.shape[1])[keep].view(n, n - 1, b.shape[1])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("mode", ["unpaired", "paired"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_info_nce_extra_negatives_match_info_nce_pytorch(
    chunk_size: int | None, mode: str, reduction: str
) -> None:
    # Convention difference: info-nce-pytorch with explicit `negative_keys` contrasts the query
    # ONLY with its positive and those keys (the other in-batch positives are dropped), while our
    # `negatives` are added to the in-batch negatives. Adaptation: the peer in 'paired' mode gets,
    # for anchor i, the keys [b_j for j != i] + (its extra negatives); that is exactly our
    # denominator. ('unpaired' ⇔ our shared (K, d) negatives, 'paired' ⇔ our (B, K, d).)
    peer_mod = load_info_nce()
    tau = 0.2
    peer = peer_mod.InfoNCE(temperature=tau, reduction=reduction, negative_mode="paired")
    a, b = _randn(6, 4, seed=2), _randn(6, 4, seed=3)
    negs = _randn(5, 4, seed=4) if mode == "unpaired" else _randn(6, 5, 4, seed=4)

    def ours(a: Tensor, b: Tensor, n: Tensor) -> Tensor:
        return info_nce(
            a, b, temperature=tau, negatives=n, reduction=reduction, chunk_size=chunk_size
        )

    def peer_fn(a: Tensor, b: Tensor, n: Tensor) -> Tensor:
        per_anchor = n.unsqueeze(0).expand(a.shape[0], *n.shape) if n.ndim == 2 else n
        return peer(a, b, torch.cat([_others(b), per_anchor], dim=1))

    for perturb in (0, 1, 2):
        assert_parity(ours, peer_fn, [a, b, negs], perturb=perturb)


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("mode", ["unpaired", "paired"])
def test_info_nce_only_extra_negatives_matches_info_nce_pytorch(
    chunk_size: int | None, mode: str
) -> None:
    # The peer's own convention (positive + explicit negatives only) is ours when every row
    # shares one positive id: all in-batch rows are then duplicates, excluded from the
    # denominator, and only the explicit negatives remain.
    peer_mod = load_info_nce()
    tau = 0.3
    peer = peer_mod.InfoNCE(temperature=tau, reduction="none", negative_mode=mode)
    a, b = _randn(6, 4, seed=5), _randn(6, 4, seed=6)
    negs = _randn(5, 4, seed=7) if mode == "unpaired" else _randn(6, 5, 4, seed=7)
    same_id = torch.zeros(6, dtype=torch.long)

    def ours(a: Tensor, b: Tensor, n: Tensor) -> Tensor:
        return info_nce(
            a,
            b,
            temperature=tau,
            negatives=n,
            positive_ids=same_id,
            reduction="none",
            chunk_size=chunk_size,
        )

    for perturb in (0, 1, 2):
        assert_parity(ours, peer, [a, b, negs], perturb=perturb)


# --------------------------------------------------------------------------------------------
# open_clip ClipLoss / SigLipLoss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("normalize", [True, False])
def test_clip_loss_matches_open_clip(chunk_size: int | None, normalize: bool) -> None:
    # Conventions: open_clip takes logit_scale = 1/τ (already exponentiated) and does not
    # normalise (its model does). So the peer gets 1/τ and F.normalize(x) when we normalise;
    # gradients are w.r.t. the raw inputs and the tensor temperature τ in both.
    # Reduction: both the mean of the two CE directions, each a mean over B.
    peer = load_open_clip_loss().ClipLoss()
    image, text = _randn(7, 5, seed=10), _randn(7, 5, seed=11)
    tau = torch.tensor(0.07, dtype=DT)
    prep = F.normalize if normalize else (lambda x: x)

    def ours(i: Tensor, t: Tensor, tau: Tensor) -> Tensor:
        return clip_loss(i, t, temperature=tau, normalize=normalize, chunk_size=chunk_size)

    def peer_fn(i: Tensor, t: Tensor, tau: Tensor) -> Tensor:
        return peer(prep(i), prep(t), 1.0 / tau)

    if not normalize:  # keep raw logits in a non-saturated range
        image, text = 0.3 * image, 0.3 * text
    assert_parity(ours, peer_fn, [image, text, tau])
    assert_parity(ours, peer_fn, [image, text, tau], perturb=1)


def test_clip_module_learnable_temperature_matches_open_clip_logit_scale() -> None:
    # Our CLIPLoss owns log(1/τ) (a LearnableTemperature); open_clip's model owns the same
    # parameter as `logit_scale` and passes logit_scale.exp() to ClipLoss. Same parameter, same
    # init log(1/0.07): the gradient w.r.t. it must agree.
    peer = load_open_clip_loss().ClipLoss()
    image, text = _randn(6, 5, seed=12), _randn(6, 5, seed=13)
    module = CLIPLoss(temperature=0.07).double()
    log_inverse = module.temperature.log_inverse

    def ours(i: Tensor, t: Tensor) -> Tensor:
        return module(i, t)

    def peer_fn(i: Tensor, t: Tensor) -> Tensor:
        return peer(F.normalize(i, dim=-1), F.normalize(t, dim=-1), log_inverse.exp())

    v_ours = ours(image, text)
    (g_ours,) = torch.autograd.grad(v_ours, [log_inverse])
    v_peer = peer_fn(image, text)
    (g_peer,) = torch.autograd.grad(v_peer, [log_inverse])
    torch.testing.assert_close(v_ours, v_peer, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(g_ours, g_peer, rtol=RTOL, atol=ATOL)
    assert float(g_ours.abs()) > CONTROL_GAP  # the parameter really receives a gradient
    assert_parity(ours, peer_fn, [image, text])


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
@pytest.mark.parametrize(("temperature", "bias"), [(0.1, -10.0), (0.5, 0.7)])
@pytest.mark.parametrize("normalize", [True, False])
def test_siglip_matches_open_clip(
    chunk_size: int | None, temperature: float, bias: float, normalize: bool
) -> None:
    # Conventions: open_clip's SigLipLoss(features, logit_scale=1/τ, logit_bias=bias) on
    # normalised features; -Σ_ij log σ(y_ij·x_ij) / B. Ours: 'mean' over the B per-anchor row
    # sums = the same value. Gradients w.r.t. inputs, τ and bias (all tensors here).
    peer = load_open_clip_loss().SigLipLoss()
    a, b = _randn(7, 5, seed=14), _randn(7, 5, seed=15)
    if not normalize:
        a, b = 0.3 * a, 0.3 * b
    tau, beta = torch.tensor(temperature, dtype=DT), torch.tensor(bias, dtype=DT)
    prep = F.normalize if normalize else (lambda x: x)

    def ours(a: Tensor, b: Tensor, tau: Tensor, beta: Tensor) -> Tensor:
        return siglip(a, b, temperature=tau, bias=beta, normalize=normalize, chunk_size=chunk_size)

    def peer_fn(a: Tensor, b: Tensor, tau: Tensor, beta: Tensor) -> Tensor:
        return peer(prep(a), prep(b), 1.0 / tau, beta)

    assert_parity(ours, peer_fn, [a, b, tau, beta])
    assert_parity(ours, peer_fn, [a, b, tau, beta], perturb=1)


def test_siglip_sum_and_none_reductions_match_open_clip() -> None:
    # open_clip returns only Σ/B; our 'sum' and the sum of 'none' (per-anchor row sums) are
    # B times that.
    peer = load_open_clip_loss().SigLipLoss()
    a, b = _randn(6, 4, seed=16), _randn(6, 4, seed=17)
    n = a.shape[0]

    def peer_sum(a: Tensor, b: Tensor) -> Tensor:
        return n * peer(F.normalize(a), F.normalize(b), torch.tensor(2.0, dtype=DT), -1.0)

    def ours_sum(a: Tensor, b: Tensor) -> Tensor:
        return siglip(a, b, temperature=0.5, bias=-1.0, reduction="sum")

    def ours_none_summed(a: Tensor, b: Tensor) -> Tensor:
        out = siglip(a, b, temperature=0.5, bias=-1.0, reduction="none")
        assert out.shape == (n,)
        return out.sum()

    assert_parity(ours_sum, peer_sum, [a, b])
    assert_parity(ours_none_summed, peer_sum, [a, b], perturb=1)


# --------------------------------------------------------------------------------------------
# NT-Xent: lightly NTXentLoss, pytorch-metric-learning NTXentLoss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_matches_lightly(chunk_size: int | None, temperature: float) -> None:
    # Same convention: lightly normalises inside, masks self, keeps the positive in the
    # denominator, and averages CE over the 2B anchors (mean of the two view directions).
    peer = load_lightly_loss().NTXentLoss(temperature=temperature)
    a, b = _randn(7, 5, seed=20), _randn(7, 5, seed=21)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return nt_xent(a, b, temperature=temperature, chunk_size=chunk_size)

    assert_parity(ours, peer, [a, b])
    assert_parity(ours, peer, [a, b], perturb=1)


def _pml_pairs_indices(ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PML ``indices_tuple`` on ``[a; b]`` (2B rows): positive pairs (i, partner of i) only;
    negative pairs (i, k) for every k whose id differs from i's."""
    n = ids.shape[0]
    rows = torch.arange(2 * n)
    partner = torch.cat([rows[n:], rows[:n]])
    full = ids.repeat(2)
    a2, neg = torch.where(full.unsqueeze(0) != full.unsqueeze(1))
    return rows, partner, a2, neg


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("with_ids", [False, True])
def test_nt_xent_matches_pml(chunk_size: int | None, with_ids: bool) -> None:
    # PML's NTXentLoss works on (embeddings, labels): embeddings = [a; b], labels = [ids; ids].
    # Each positive PAIR (i, p) gets -log(e^{s_ip} / (e^{s_ip} + Σ_{n: label ≠ label_i} e^{s_in}))
    # (other positives excluded from the denominator), mean over positive pairs.
    # - Without ids (labels 0..B-1 twice) each anchor has exactly one positive pair (its
    #   partner): identical to SimCLR's NT-Xent and to ours, mean over 2B anchors.
    # - With repeated ids PML would add one term per duplicate (a duplicate is a positive there,
    #   but merely "not a negative" for us). Adaptation: pass PML an explicit indices_tuple with
    #   the partner pairs as positives and the different-id pairs as negatives.
    pml = load_pml()
    tau = 0.2
    peer = pml.NTXentLoss(temperature=tau)
    n = 6
    a, b = _randn(n, 5, seed=22), _randn(n, 5, seed=23)
    ids = torch.tensor([0, 1, 0, 2, 3, 1]) if with_ids else torch.arange(n)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return nt_xent(
            a, b, temperature=tau, positive_ids=ids if with_ids else None, chunk_size=chunk_size
        )

    def peer_fn(a: Tensor, b: Tensor) -> Tensor:
        indices = _pml_pairs_indices(ids) if with_ids else None
        return peer(torch.cat([a, b]), ids.repeat(2), indices_tuple=indices)

    assert_parity(ours, peer_fn, [a, b])
    assert_parity(ours, peer_fn, [a, b], perturb=1)


# --------------------------------------------------------------------------------------------
# DCL / DCLW: lightly DCLLoss / DCLWLoss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_dcl_matches_lightly(chunk_size: int | None, temperature: float) -> None:
    # Same convention: lightly normalises inside, drops the positive from the denominator
    # (2B - 2 negatives: other samples in both views) and returns 0.5·(L(a,b) + L(b,a)), each a
    # mean over B; ours is the mean over the 2B anchors: the same number.
    peer = load_lightly_loss().DCLLoss(temperature=temperature)
    a, b = _randn(7, 5, seed=30), _randn(7, 5, seed=31)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return dcl(a, b, temperature=temperature, chunk_size=chunk_size)

    assert_parity(ours, peer, [a, b])
    assert_parity(ours, peer, [a, b], perturb=1)


def test_dcl_symmetric_positive_weight_fn_matches_lightly() -> None:
    # A non-detached, symmetric weight function: the gradient through the weights must agree
    # too. (lightly calls weight_fn(out0, out1) for L(a,b) and weight_fn(out1, out0) for L(b,a);
    # ours calls it once on (a, b) — identical only for symmetric weight functions.)
    def weight_fn(x: Tensor, y: Tensor) -> Tensor:
        return 1.0 + 0.5 * (x * y).sum(-1) ** 2

    peer = load_lightly_loss().DCLLoss(temperature=0.2, weight_fn=weight_fn)
    a, b = _randn(6, 4, seed=32), _randn(6, 4, seed=33)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return dcl(a, b, temperature=0.2, positive_weight_fn=weight_fn)

    assert_parity(ours, peer, [a, b])


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")  # lightly's torch.tensor(t)
@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize(("temperature", "sigma"), [(0.1, 0.5), (0.3, 0.2)])
def test_dclw_matches_lightly(chunk_size: int | None, temperature: float, sigma: float) -> None:
    # Same convention: w_i = 2 - B·softmax_i(<z_i, z'_i>/σ) on detached normalised views,
    # multiplying the positive term only; symmetric average of both directions.
    peer = load_lightly_loss().DCLWLoss(temperature=temperature, sigma=sigma)
    a, b = _randn(7, 5, seed=34), _randn(7, 5, seed=35)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return dclw(a, b, temperature=temperature, sigma=sigma, chunk_size=chunk_size)

    assert_parity(ours, peer, [a, b])
    assert_parity(ours, peer, [a, b], perturb=1)


# --------------------------------------------------------------------------------------------
# SupCon: pytorch-metric-learning SupConLoss
# --------------------------------------------------------------------------------------------

# Labels where some anchors have no positive (classes 3 and 4 are singletons with one view).
LABELS_WITH_SINGLETONS = torch.tensor([0, 1, 0, 2, 1, 3, 2, 4])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 0, 2, 1, 2, 0, 1]), LABELS_WITH_SINGLETONS])
def test_supcon_2d_matches_pml(chunk_size: int | None, labels: Tensor) -> None:
    # PML's SupConLoss: cosine logits / τ, self excluded, other positives in the denominator,
    # (1/|P(i)|) Σ_p over positives; no τ/τ_base factor (ours with base_temperature=None has
    # none either); AvgNonZeroReducer = mean over anchors with a non-zero loss, i.e. over the
    # anchors that have a positive, which is also our 'mean'. So singleton anchors are dropped
    # from the mean by both.
    peer = load_pml().SupConLoss(temperature=0.1)
    x = _randn(8, 5, seed=40)

    def ours(x: Tensor) -> Tensor:
        return supcon(x, labels, temperature=0.1, chunk_size=chunk_size)

    def peer_fn(x: Tensor) -> Tensor:
        return peer(x, labels)

    assert_parity(ours, peer_fn, [x])


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 0, 2, 1]), None])
def test_supcon_multiview_matches_pml(chunk_size: int | None, labels: Tensor | None) -> None:
    # (B, V, d) with contrast_mode='all': every view is an anchor; PML gets the B·V rows with
    # each sample's label repeated over its views (labels=None: the sample index, i.e. SimCLR
    # positives). The mean is order-free, so our views-major order does not matter.
    # (contrast_mode='one' has no PML counterpart: with ref_emb PML would not mask the anchor's
    # own copy among the references.)
    peer = load_pml().SupConLoss(temperature=0.07)
    x = _randn(5, 3, 4, seed=41)
    sample_labels = torch.arange(5) if labels is None else labels

    def ours(x: Tensor) -> Tensor:
        return supcon(x, labels, temperature=0.07, chunk_size=chunk_size)

    def peer_fn(x: Tensor) -> Tensor:
        return peer(x.reshape(-1, x.shape[-1]), sample_labels.repeat_interleave(x.shape[1]))

    assert_parity(ours, peer_fn, [x])


def test_supcon_base_temperature_is_pml_times_ratio() -> None:
    # SupContrast's factor: ours with base_temperature=τ_b is (τ/τ_b) × PML's (factor-free) loss.
    tau, tau_b = 0.1, 0.07
    peer = load_pml().SupConLoss(temperature=tau)
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    x = _randn(6, 2, 4, seed=42)

    def ours(x: Tensor) -> Tensor:
        return supcon(x, labels, temperature=tau, base_temperature=tau_b)

    def peer_fn(x: Tensor) -> Tensor:
        return (tau / tau_b) * peer(x.reshape(-1, 4), labels.repeat_interleave(2))

    assert_parity(ours, peer_fn, [x])


# --------------------------------------------------------------------------------------------
# CWCL: no peer implements it; two special cases that open_clip does implement
# --------------------------------------------------------------------------------------------


def test_cwcl_with_identity_weights_is_open_clip_clip_loss() -> None:
    # W = I (orthonormal frozen embeddings, weight_fn = relu): hard labels, so CWCL is the CLIP
    # loss; open_clip ClipLoss with logit_scale = 1/τ on normalised features.
    peer = load_open_clip_loss().ClipLoss()
    a, b = _randn(5, 4, seed=50), _randn(5, 4, seed=51)
    q = torch.eye(5, dtype=DT)[torch.randperm(5, generator=_gen(52))]

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return cwcl(a, b, weight_embeddings=q, temperature=0.1, weight_fn=torch.relu)

    def peer_fn(a: Tensor, b: Tensor) -> Tensor:
        return peer(F.normalize(a), F.normalize(b), torch.tensor(10.0, dtype=DT))

    assert_parity(ours, peer_fn, [a, b])
    assert_parity(ours, peer_fn, [a, b], perturb=1)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_cwcl_soft_labels_match_open_clip_distillation(chunk_size: int | None) -> None:
    # With weight_fn(c) = exp(c·s) the row-normalised CWCL targets w_ij / Σ_j w_ij are
    # softmax_j(s·<q_i, q_j>): the teacher probabilities of open_clip's DistillClipLoss when the
    # teacher's image and text features are both q and its logit scale is s. Its distill term
    # (CE(teacher_i2t, student_i2t) + CE(teacher_t2i, student_t2i)) / 2 is then our symmetric
    # CWCL (the weight matrix is symmetric, so both directions use the same soft labels).
    peer = load_open_clip_loss().DistillClipLoss()
    a, b, q = _randn(7, 5, seed=53), _randn(7, 5, seed=54), _randn(7, 3, seed=55)
    s, tau = 4.0, 0.2

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return cwcl(
            a,
            b,
            weight_embeddings=q,
            temperature=tau,
            weight_fn=lambda c: torch.exp(s * c),
            chunk_size=chunk_size,
        )

    def peer_fn(a: Tensor, b: Tensor) -> Tensor:
        qn = F.normalize(q)
        _, distill = peer(
            F.normalize(a), F.normalize(b), 1.0 / tau, qn, qn, torch.tensor(s, dtype=DT)
        )
        return distill

    assert_parity(ours, peer_fn, [a, b])
    assert_parity(ours, peer_fn, [a, b], perturb=1)
