"""SogCLR / iSogCLR: float64 loop reference, LibAUC GCLoss_v1 parity (gradients and state after N
steps), tiled-engine parity, checkpoint resume, negative controls and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from peers import load_libauc_contrastive

from contrastkit.losses.sogclr import (
    ISogCLRLoss,
    SogCLRLoss,
    cosine_gamma,
    isogclr_loss,
    sogclr_loss,
    update_temperature,
)

DT = torch.float64
N_SAMPLES, BATCH, DIM = 12, 4, 5
# Each batch is either all-new or all-seen indices, so LibAUC's batch-level first-visit test
# (u[index].sum() == 0) and our per-index `seen` buffer pick the same gamma.
SCHEDULE = [[0, 1, 2, 3], [4, 5, 6, 7], [3, 1, 0, 2], [8, 9, 10, 11], [7, 5, 4, 6], [11, 2, 8, 0]]
SCHEDULE[-1] = [10, 9, 8, 11]


def _batches(
    seed: int, steps: list[list[int]]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for idx in steps:
        a = torch.randn(BATCH, DIM, generator=gen, dtype=DT)
        b = a + 0.7 * torch.randn(BATCH, DIM, generator=gen, dtype=DT)  # correlated views
        out.append((a, b, torch.tensor(idx)))
    return out


# ------------------------------------------------------------------------------------------
# float64 loop reference written from the formulas (methods.md §7 / LibAUC docstring)


class LoopRef:
    """Per-index state in Python dicts; one step = loops over anchors, directions, negatives."""

    def __init__(
        self,
        tau0: float,
        gamma: float,
        iso: bool,
        rho=0.3,
        eta=0.01,
        beta=0.9,
        tau_min=0.05,
        tau_max=0.7,
        grad_clip=None,
    ):
        self.u: dict[int, float] = {}
        self.tau: dict[int, float] = {}
        self.m: dict[int, float] = {}
        self.tau0, self.gamma, self.iso = tau0, gamma, iso
        self.rho, self.eta, self.beta = rho, eta, beta
        self.tau_min, self.tau_max, self.grad_clip = tau_min, tau_max, grad_clip

    def step(self, a, b, index, gamma=None):
        """Returns (value, grad_a, grad_b) and updates the state."""
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        za, zb = F.normalize(a, dim=1), F.normalize(b, dim=1)
        n = za.shape[0]
        n_neg = 2 * (n - 1)
        surrogate = torch.zeros((), dtype=DT)
        value = 0.0
        new_u, new_tau, new_m = {}, {}, {}
        for i in range(n):
            key = int(index[i])
            tau = self.tau.get(key, self.tau0) if self.iso else self.tau0
            seen = key in self.u
            gam = (self.gamma if gamma is None else gamma) if seen else 1.0
            dir_u, dir_gt = [], []
            for anchor, pos, same, other in ((za, zb, za, zb), (zb, za, zb, za)):
                s_pos = anchor[i] @ pos[i]
                negs = [anchor[i] @ other[j] for j in range(n) if j != i]
                negs += [anchor[i] @ same[j] for j in range(n) if j != i]
                g = sum(math.exp(float(s.detach()) / tau) for s in negs) / n_neg
                u = (1 - gam) * self.u[key] + gam * g if seen else g
                p = [math.exp(float(s.detach()) / tau) / u for s in negs]  # detached weights
                surrogate = surrogate + 0.5 * (
                    sum(pj * s for pj, s in zip(p, negs, strict=True)) / n_neg - s_pos
                )
                value += 0.5 * (
                    tau * math.log(u) - float(s_pos.detach()) + (self.rho * tau if self.iso else 0)
                )
                dir_u.append(u)
                dir_gt.append(
                    math.log(u)
                    + self.rho
                    - sum(pj * float(s.detach()) / tau for pj, s in zip(p, negs, strict=True))
                    / n_neg
                )
            new_u[key] = 0.5 * (dir_u[0] + dir_u[1])
            if self.iso:
                gt = 0.5 * (dir_gt[0] + dir_gt[1])
                if self.grad_clip is not None:
                    gt = max(-self.grad_clip, min(self.grad_clip, gt))
                m = (1 - self.beta) * self.m.get(key, 0.0) + self.beta * gt
                new_m[key] = m
                new_tau[key] = min(self.tau_max, max(self.tau_min, tau - self.eta * m))
        surrogate = surrogate / n
        ga, gb = torch.autograd.grad(surrogate, (a, b))
        self.u.update(new_u)
        self.m.update(new_m)
        self.tau.update(new_tau)
        return value / n, ga, gb


def _f64(cls, num_samples, temperature=0.1, gamma=0.9, **kwargs):
    """Build a module with float64 buffers (a float32 buffer of 0.1 cast to float64 is not 0.1)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)
    try:
        return cls(num_samples, temperature=temperature, gamma=gamma, **kwargs)
    finally:
        torch.set_default_dtype(old)


def _run(module, batches, gamma=None):
    out = []
    for a, b, idx in batches:
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        loss = module(a, b, idx) if gamma is None else module(a, b, idx, gamma=gamma)
        ga, gb = torch.autograd.grad(loss, (a, b))
        out.append((loss.detach(), ga, gb))
    return out


@pytest.mark.parametrize("iso", [False, True])
def test_loop_reference_values_gradients_and_state(iso: bool) -> None:
    batches = _batches(0, SCHEDULE)
    ref = LoopRef(0.1, 0.9, iso)
    ours = _f64(ISogCLRLoss if iso else SogCLRLoss, N_SAMPLES, 0.1, 0.9)
    for (a, b, idx), (loss, ga, gb) in zip(batches, _run(ours, batches), strict=True):
        value, ra, rb = ref.step(a, b, idx)
        torch.testing.assert_close(loss, torch.tensor(value, dtype=DT), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ga, ra, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(gb, rb, rtol=1e-9, atol=1e-12)
    keys = sorted(ref.u)
    torch.testing.assert_close(ours.u[keys], torch.tensor([ref.u[k] for k in keys], dtype=DT))
    if iso:
        torch.testing.assert_close(
            ours.temperatures[keys], torch.tensor([ref.tau[k] for k in keys], dtype=DT)
        )
        torch.testing.assert_close(
            ours.momentum[keys], torch.tensor([ref.m[k] for k in keys], dtype=DT)
        )
        # The temperatures actually moved (the state comparison is not vacuous).
        assert (ours.temperatures[keys] - 0.1).abs().max() > 1e-4


def test_loop_reference_grad_clip_and_custom_gamma() -> None:
    batches = _batches(1, SCHEDULE)
    ref = LoopRef(0.2, 0.5, True, rho=0.4, eta=0.05, beta=0.5, grad_clip=0.05)
    ours = _f64(ISogCLRLoss, N_SAMPLES, 0.2, 0.5, rho=0.4, eta=0.05, beta=0.5, grad_clip=0.05)
    for (a, b, idx), (loss, ga, gb) in zip(batches, _run(ours, batches, gamma=0.7), strict=True):
        value, ra, rb = ref.step(a, b, idx, gamma=0.7)
        torch.testing.assert_close(loss, torch.tensor(value, dtype=DT))
        torch.testing.assert_close(ga, ra)
        torch.testing.assert_close(gb, rb)
    keys = sorted(ref.m)
    torch.testing.assert_close(
        ours.momentum[keys], torch.tensor([ref.m[k] for k in keys], dtype=DT)
    )
    assert ours.momentum[keys].abs().max() <= 0.05 + 1e-12  # clipped gradients, beta-averaged


# ------------------------------------------------------------------------------------------
# LibAUC GCLoss_v1 parity: gradients (LibAUC sums the two directions: 2x ours) and state


def _libauc(n, **kw):
    contrastive = load_libauc_contrastive()
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)  # LibAUC allocates its state with the default dtype
    try:
        return contrastive.GCLoss_v1(N=n, device=torch.device("cpu"), **kw)
    finally:
        torch.set_default_dtype(old)


def _libauc_grads(loss_fn, batches, epoch_of=None):
    out = []
    for step, (a, b, idx) in enumerate(batches):
        if epoch_of is not None:
            loss_fn.adjust_gamma(epoch_of(step))
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        ga, gb = torch.autograd.grad(loss_fn(a, b, idx), (a, b))
        out.append((ga, gb))
    return out


@pytest.mark.parametrize("iso", [False, True])
def test_libauc_parity_gradients_and_state_after_n_steps(iso: bool) -> None:
    batches = _batches(2, SCHEDULE)
    peer = _libauc(N_SAMPLES, tau=0.1, gamma=0.9, enable_isogclr=iso)
    ours = _f64(ISogCLRLoss if iso else SogCLRLoss, N_SAMPLES, 0.1, 0.9)
    for (pa, pb), (_, ga, gb) in zip(
        _libauc_grads(peer, batches), _run(ours, batches), strict=True
    ):
        torch.testing.assert_close(pa, 2 * ga, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(pb, 2 * gb, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(peer.u.flatten(), ours.u, rtol=1e-10, atol=0)
    if iso:
        torch.testing.assert_close(peer.learnable_tau.flatten(), ours.temperatures)
        torch.testing.assert_close(peer.grad_tau.flatten(), ours.momentum)
        assert (ours.temperatures - 0.1).abs().max() > 1e-4


def test_libauc_parity_cosine_gamma_schedule() -> None:
    epochs = 3
    steps = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] * epochs
    batches = _batches(3, steps)
    peer = _libauc(N_SAMPLES, tau=0.2, gamma=0.6, gamma_schedule="cosine", gamma_decay_epochs=2)
    ours = _f64(SogCLRLoss, N_SAMPLES, 0.2)
    peer_grads = _libauc_grads(peer, batches, epoch_of=lambda s: s // 3)
    for step, ((pa, pb), (a, b, idx)) in enumerate(zip(peer_grads, batches, strict=True)):
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        loss = ours(a, b, idx, gamma=cosine_gamma(step // 3, 0.6, 2))
        ga, gb = torch.autograd.grad(loss, (a, b))
        torch.testing.assert_close(pa, 2 * ga)
        torch.testing.assert_close(pb, 2 * gb)
    torch.testing.assert_close(peer.u.flatten(), ours.u, rtol=1e-10, atol=0)


def test_libauc_parity_negative_control() -> None:
    """The parity is not vacuous: a different state (indices) or another γ changes gradients."""
    batches = _batches(4, SCHEDULE)
    peer = _libauc(N_SAMPLES, tau=0.1, gamma=0.9)
    peer_grads = _libauc_grads(peer, batches)
    # State mixed up: on the revisit steps the rows read each other's u.
    shifted = [(a, b, idx.roll(1) if s in (2, 4) else idx) for s, (a, b, idx) in enumerate(batches)]
    ours = _run(_f64(SogCLRLoss, N_SAMPLES, 0.1, 0.9), shifted)
    other_gamma = _run(_f64(SogCLRLoss, N_SAMPLES, 0.1, 0.5), batches)
    # Steps 3 and 5 revisit indices: there the moving average matters.
    for step in (2, 4):
        assert not torch.allclose(peer_grads[step][0], 2 * ours[step][1], rtol=1e-4, atol=1e-8)
        assert not torch.allclose(
            peer_grads[step][0], 2 * other_gamma[step][1], rtol=1e-4, atol=1e-8
        )


# ------------------------------------------------------------------------------------------
# Engine paths, reductions, dtypes


@pytest.mark.parametrize("iso", [False, True])
def test_tiled_engine_matches_dense(iso: bool) -> None:
    batches = _batches(5, SCHEDULE[:3])
    dense = (ISogCLRLoss(N_SAMPLES) if iso else SogCLRLoss(N_SAMPLES)).double()
    tiled = ISogCLRLoss(N_SAMPLES, chunk_size=3) if iso else SogCLRLoss(N_SAMPLES, chunk_size=3)
    tiled = tiled.double()
    for x, y in zip(_run(dense, batches), _run(tiled, batches), strict=True):
        for p, q in zip(x, y, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    for name, buf in dense.named_buffers():
        torch.testing.assert_close(buf, dict(tiled.named_buffers())[name])


def test_reductions_and_functional_module_agree() -> None:
    a, b, idx = _batches(6, [[0, 1, 2, 3]])[0]
    log_u, seen = torch.zeros(BATCH, dtype=DT), torch.zeros(BATCH, dtype=torch.bool)
    none = sogclr_loss(a, b, log_u, seen, reduction="none").loss
    assert none.shape == (BATCH,)
    torch.testing.assert_close(sogclr_loss(a, b, log_u, seen, reduction="sum").loss, none.sum())
    torch.testing.assert_close(sogclr_loss(a, b, log_u, seen).loss, none.mean())
    module = _f64(SogCLRLoss, N_SAMPLES)
    torch.testing.assert_close(module(a, b, idx), none.mean())


def test_first_visit_value_is_batch_gcl() -> None:
    """At the first visit u = g, so the value is the batch GCL: τ·log mean exp(h/τ)."""
    a, b, idx = _batches(7, [[0, 1, 2, 3]])[0]
    za, zb = F.normalize(a, dim=1), F.normalize(b, dim=1)
    tau = 0.3
    expected = []
    for i in range(BATCH):
        per_dir = []
        for anc, pos in ((za, zb), (zb, za)):
            negs = torch.cat([anc[i] @ pos.T, anc[i] @ anc.T])
            keep = torch.ones(2 * BATCH, dtype=torch.bool)
            keep[i] = keep[BATCH + i] = False
            h = negs[keep] - anc[i] @ pos[i]
            per_dir.append(tau * torch.log(torch.exp(h / tau).mean()))
        expected.append(0.5 * (per_dir[0] + per_dir[1]))
    loss = _f64(SogCLRLoss, N_SAMPLES, tau)(a, b, idx)
    torch.testing.assert_close(loss, torch.stack(expected).mean())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_return_fp32(dtype: torch.dtype) -> None:
    a, b, idx = _batches(8, [[0, 1, 2, 3]])[0]
    loss16 = SogCLRLoss(N_SAMPLES)(a.to(dtype), b.to(dtype), idx)
    loss32 = SogCLRLoss(N_SAMPLES)(a.to(dtype).float(), b.to(dtype).float(), idx)
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32)


def test_small_temperature_does_not_overflow() -> None:
    """log-domain u: τ = 0.005 would overflow exp(s/τ) in fp32 (e^200)."""
    gen = torch.Generator().manual_seed(9)
    a = torch.randn(BATCH, DIM, generator=gen)
    b = a + 0.01 * torch.randn(BATCH, DIM, generator=gen)
    module = ISogCLRLoss(N_SAMPLES, temperature=0.005, tau_min=0.001, tau_max=0.05, rho=6.0)
    for _ in range(3):
        a_ = a.clone().requires_grad_(True)
        loss = module(a_, b, torch.arange(BATCH))
        (g,) = torch.autograd.grad(loss, a_)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    assert torch.isfinite(module.log_u).all() and torch.isfinite(module.temperatures).all()


# ------------------------------------------------------------------------------------------
# State: checkpoint resume, duplicates, device/dtype moves, pure temperature update


@pytest.mark.parametrize("iso", [False, True])
def test_state_dict_resume_is_exact(iso: bool) -> None:
    batches = _batches(10, SCHEDULE)
    make = (lambda: ISogCLRLoss(N_SAMPLES)) if iso else (lambda: SogCLRLoss(N_SAMPLES))
    straight = make().double()
    full = _run(straight, batches)
    first = make().double()
    _run(first, batches[:3])
    state = copy.deepcopy(first.state_dict())
    expected_keys = {"log_u", "seen"} | ({"temperatures", "momentum"} if iso else set())
    assert set(state) == expected_keys
    resumed = make().double()
    resumed.load_state_dict(state)
    rest = _run(resumed, batches[3:])
    for x, y in zip(full[3:], rest, strict=True):
        for p, q in zip(x, y, strict=True):
            assert torch.equal(p, q)
    for name, buf in straight.named_buffers():
        assert torch.equal(buf, dict(resumed.named_buffers())[name])
    # Negative control: resuming from a fresh state gives different results on revisits.
    fresh = _run(make().double(), batches[3:])
    assert not torch.allclose(fresh[1][1], full[4][1])


def test_duplicate_indices_write_the_mean() -> None:
    a, b, _ = _batches(11, [[0, 1, 2, 3]])[0]
    idx = torch.tensor([5, 2, 5, 7])
    log_u, seen = torch.zeros(BATCH, dtype=DT), torch.zeros(BATCH, dtype=torch.bool)
    rows = sogclr_loss(a, b, log_u, seen).log_u
    module = _f64(SogCLRLoss, N_SAMPLES)
    module(a, b, idx)
    torch.testing.assert_close(module.log_u[5], 0.5 * (rows[0] + rows[2]))
    torch.testing.assert_close(module.log_u[[2, 7]], rows[[1, 3]])
    assert module.seen.tolist() == [i in (2, 5, 7) for i in range(N_SAMPLES)]


def test_buffers_follow_module_dtype_and_device() -> None:
    module = ISogCLRLoss(N_SAMPLES).double()
    assert {b.dtype for n, b in module.named_buffers() if n != "seen"} == {DT}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        moved = SogCLRLoss(N_SAMPLES).to(device)
        a, b, idx = (t.to(device) for t in _batches(12, [[0, 1, 2, 3]])[0])
        moved(a.float(), b.float(), idx)
        assert moved.log_u.device.type == device and bool(moved.seen[:4].all())


def test_update_temperature_pure_function() -> None:
    tau = torch.tensor([0.1, 0.1, 0.69])
    m = torch.tensor([0.0, 1.0, -1.0])
    g = torch.tensor([2.0, -1.0, -10.0])
    new_m, new_tau = update_temperature(tau, m, g, eta=0.1, beta=0.5, tau_min=0.05, tau_max=0.7)
    torch.testing.assert_close(new_m, torch.tensor([1.0, 0.0, -5.5]))
    torch.testing.assert_close(new_tau, torch.tensor([0.05, 0.1, 0.7]))


def test_cosine_gamma_schedule_values() -> None:
    assert cosine_gamma(0, 0.8, 10) == pytest.approx(1.0)
    assert cosine_gamma(5, 0.8, 10) == pytest.approx(0.9)
    assert cosine_gamma(10, 0.8, 10) == pytest.approx(0.8)
    assert cosine_gamma(50, 0.8, 10) == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------
# Bad input


def _ab():
    a, b, idx = _batches(13, [[0, 1, 2, 3]])[0]
    return a, b, idx


@pytest.mark.parametrize("cls", [SogCLRLoss, ISogCLRLoss])
def test_bad_index(cls) -> None:
    a, b, _ = _ab()
    module = cls(N_SAMPLES).double()
    with pytest.raises(ValueError, match="index must lie in"):
        module(a, b, torch.tensor([0, 1, 2, N_SAMPLES]))
    with pytest.raises(ValueError, match="index must lie in"):
        module(a, b, torch.tensor([0, -1, 2, 3]))
    with pytest.raises(ValueError, match="index must be an integer"):
        module(a, b, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"index must have shape \(4,\)"):
        module(a, b, torch.tensor([0, 1, 2]))
    assert not module.seen.any()  # nothing was written by failed calls


@pytest.mark.parametrize("cls", [SogCLRLoss, ISogCLRLoss])
def test_bad_embeddings(cls) -> None:
    a, b, idx = _ab()
    module = cls(N_SAMPLES).double()
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="a contains NaN"):
        module(bad, b, idx)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        module(a, b[:, :3], idx)
    with pytest.raises(ValueError, match="a needs at least 2 rows"):
        module(a[:1], b[:1], idx[:1])
    with pytest.raises(ValueError, match="a must have shape"):
        module(a[0], b[0], idx)


def test_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        SogCLRLoss(0)
    with pytest.raises(ValueError, match="temperature"):
        SogCLRLoss(10, temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        SogCLRLoss(10, gamma=1.5)
    with pytest.raises(ValueError, match="reduction"):
        SogCLRLoss(10, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau_min must be <= tau_max"):
        ISogCLRLoss(10, tau_min=0.5, tau_max=0.1)
    with pytest.raises(ValueError, match="rho"):
        ISogCLRLoss(10, rho=-1.0)
    with pytest.raises(ValueError, match="beta"):
        ISogCLRLoss(10, beta=0.0)
    with pytest.raises(ValueError, match="grad_clip"):
        ISogCLRLoss(10, grad_clip=0.0)
    a, b, idx = _ab()
    with pytest.raises(ValueError, match="gamma"):
        _f64(SogCLRLoss, N_SAMPLES)(a, b, idx, gamma=0.0)


def test_bad_state_rows_in_pure_function() -> None:
    a, b, _ = _ab()
    seen = torch.zeros(BATCH, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"log_u must have shape \(4,\)"):
        sogclr_loss(a, b, torch.zeros(3, dtype=DT), seen)
    with pytest.raises(ValueError, match="seen must be a bool"):
        sogclr_loss(a, b, torch.zeros(BATCH, dtype=DT), seen.long())
    tau = torch.full((BATCH,), 0.1, dtype=DT)
    tau[0] = -0.1
    with pytest.raises(ValueError, match="temperatures must be finite and > 0"):
        isogclr_loss(a, b, torch.zeros(BATCH, dtype=DT), seen, tau, torch.zeros(BATCH, dtype=DT))


def test_gamma_one_is_tau_times_dcl() -> None:
    """With γ = 1 (u = the batch estimate) SogCLR is τ·DCL - τ·log 2(B-1), gradients τ·∇DCL."""
    from contrastkit.losses.dcl import dcl

    tau = 0.3
    module = _f64(SogCLRLoss, N_SAMPLES, tau, 1.0)
    for a, b, idx in _batches(14, [[0, 1, 2, 3], [3, 2, 1, 0]]):  # second step revisits
        a1, a2 = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
        ours = module(a1, b, idx)
        ref = tau * (dcl(a2, b, temperature=tau) - math.log(2 * (BATCH - 1)))
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(
            torch.autograd.grad(ours, a1)[0], torch.autograd.grad(ref, a2)[0]
        )
    # Negative control: γ < 1 on the revisit departs from the batch-local loss.
    other = _f64(SogCLRLoss, N_SAMPLES, tau, 0.5)
    steps = _batches(15, [[0, 1, 2, 3], [3, 2, 1, 0]])
    other(*steps[0])
    a, b, idx = steps[1]
    assert not torch.allclose(other(a, b, idx), tau * (dcl(a, b, temperature=tau) - math.log(6)))


def test_check_values_off_gives_same_result() -> None:
    batches = _batches(16, SCHEDULE[:3])
    checked = _f64(ISogCLRLoss, N_SAMPLES)
    unchecked = _f64(ISogCLRLoss, N_SAMPLES, check_values=False)
    for a, b, idx in batches:
        assert torch.equal(checked(a, b, idx), unchecked(a, b, idx))
    assert torch.equal(checked.temperatures, unchecked.temperatures)
