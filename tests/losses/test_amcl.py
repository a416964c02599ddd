from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.amcl import (
    AMCLLoss,
    PairTemperatureMLP,
    amcl_loss,
    temperature_regulariser,
)

D64 = torch.float64


def ref_amcl(a, b, tfn, beta, reg_dim):
    """Loops over pairs, heads, directions and every candidate negative (2B - 2)."""
    za, zb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n, heads, _ = za.shape

    def omega(t):
        return reg_dim / 2 * torch.log(t) + 1 / t

    total = za.new_zeros(())
    for i in range(n):
        for c in range(heads):
            for u, w in ((za, zb), (zb, za)):
                anchor, pos = u[i, c], w[i, c]
                cands = [u[j, c] for j in range(n) if j != i] + [
                    w[j, c] for j in range(n) if j != i
                ]
                sims = [float(torch.dot(anchor, x).detach()) for x in cands]
                neg = cands[max(range(len(sims)), key=sims.__getitem__)]
                tp = tfn(anchor[None], pos[None], c)[0]
                tn = tfn(anchor[None], neg[None], c)[0]
                term = -torch.dot(anchor, pos) / tp + torch.dot(anchor, neg) / tn
                term = term + beta * omega(tp) - beta * omega(tn)
                total = total + 0.5 * term
    return total / n


def _data(n=5, heads=2, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, heads, d, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(n, heads, d, generator=g, dtype=D64, requires_grad=True)
    return a, b


def _net(d=3, heads=2, seed=0):
    torch.manual_seed(seed)
    return PairTemperatureMLP(d, num_heads=heads, hidden_dim=8).double()


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_matches_loop_reference_values_and_gradients(beta: float) -> None:
    a, b = _data()
    net = _net()
    ours = amcl_loss(a, b, temperature_fn=net, beta=beta)
    ref = ref_amcl(a, b, net, beta, reg_dim=3)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    params = [a, b, *net.parameters()]
    g_ours = torch.autograd.grad(ours, params)
    g_ref = torch.autograd.grad(ref, params)
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_reg_dim_override_matches_reference() -> None:
    a, b = _data(n=4, heads=1, d=3, seed=1)
    net = _net(heads=1, seed=1)
    ours = amcl_loss(a, b, temperature_fn=net, beta=0.2, reg_dim=128)
    ref = ref_amcl(a, b, net, 0.2, reg_dim=128)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_closed_form_constant_and_similarity_temperatures() -> None:
    e1, e2 = torch.tensor([1.0, 0.0], dtype=D64), torch.tensor([0.0, 1.0], dtype=D64)
    a = torch.stack([e1, e2])[:, None]  # (2, 1, 2)
    b = a.clone()
    # Constant temperature: regularisers cancel; s_pos = 1, hardest negative s = 0.
    const = lambda x, y, c: torch.full((x.shape[0],), 0.5, dtype=D64)  # noqa: E731
    assert amcl_loss(a, b, temperature_fn=const).item() == pytest.approx(-2.0, abs=1e-12)
    # tau = 1 + sim: positives tau=2, negatives tau=1, d = 2.
    by_sim = lambda x, y, c: 1.0 + (x * y).sum(-1)  # noqa: E731
    beta = 0.3
    expected = -0.5 + 0.0 + beta * (math.log(2) + 0.5) - beta * (0.0 + 1.0)
    assert amcl_loss(a, b, temperature_fn=by_sim, beta=beta).item() == pytest.approx(
        expected, abs=1e-12
    )


def test_hardest_negative_is_chosen_by_raw_similarity() -> None:
    # Anchor e1; negatives at cos 0.9 and 0.5. The temperature makes 0.5/0.1 > 0.9/1.0, but
    # the documented form picks n* = argmax sim (the 0.9 one).
    c9, c5 = 0.9, 0.5
    anchor = torch.tensor([1.0, 0.0], dtype=D64)
    n9 = torch.tensor([c9, math.sqrt(1 - c9**2)], dtype=D64)
    n5 = torch.tensor([c5, -math.sqrt(1 - c5**2)], dtype=D64)
    a = torch.stack([anchor, n9, n5])[:, None]
    b = a.clone()
    tfn = lambda x, y, c: torch.where((x * y).sum(-1) > 0.7, 1.0, 0.1).to(D64)  # noqa: E731
    per = amcl_loss(a, b, temperature_fn=tfn, beta=1e-9, reduction="none")
    # pair 0: positive s=1 at tau=1 (s>0.7); hardest negative 0.9 at tau=1.
    assert per[0].item() == pytest.approx(-1.0 + 0.9, abs=1e-6)


def test_temperature_mlp_bounds_and_init() -> None:
    net = PairTemperatureMLP(4, num_heads=2, hidden_dim=16, lower=0.05, upper=1.0, temp_init=0.2)
    x, y = torch.randn(100, 4) * 10, torch.randn(100, 4) * 10
    for head in range(2):
        tau = net(x, y, head)
        assert tau.shape == (100,) and (tau > 0.05).all() and (tau < 1.0).all()
    with torch.no_grad():
        for mlp in net.heads:
            list(mlp.children())[-1].weight.zero_()
    assert torch.allclose(net(x, y, 0), torch.full((100,), 0.2))
    # heads are independent networks
    assert not torch.equal(net.heads[0][0].weight, net.heads[1][0].weight)


def test_regulariser_formula() -> None:
    tau = torch.tensor([0.5, 2.0], dtype=D64)
    expected = torch.tensor([64 * math.log(0.5) + 2.0, 64 * math.log(2.0) + 0.5], dtype=D64)
    torch.testing.assert_close(temperature_regulariser(tau, 128), expected)


def test_module_learns_temperatures_and_reductions() -> None:
    torch.manual_seed(0)
    loss_fn = AMCLLoss(dim=6, num_heads=3, hidden_dim=8)
    a, b = torch.randn(8, 3, 6), torch.randn(8, 3, 6)
    loss = loss_fn(a, b)
    loss.backward()
    grads = [p.grad for p in loss_fn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)
    per = amcl_loss(a, b, temperature_fn=loss_fn.temperature_net, beta=0.1, reduction="none")
    assert per.shape == (8,)
    torch.testing.assert_close(per.mean(), loss.detach(), rtol=1e-6, atol=1e-6)
    assert torch.allclose(
        per.sum(), amcl_loss(a, b, temperature_fn=loss_fn.temperature_net, reduction="sum")
    )
    out = loss_fn(a.half(), b.half())
    assert out.dtype == torch.float32


def test_negative_control_other_negatives_change_gradient() -> None:
    a, b = _data(seed=2)
    net = _net(seed=2)
    b2 = b.detach().clone()
    b2[3] = -b2[3]
    b2.requires_grad_(True)
    g1 = torch.autograd.grad(amcl_loss(a, b, temperature_fn=net), a)[0]
    g2 = torch.autograd.grad(amcl_loss(a, b2, temperature_fn=net), a)[0]
    assert not torch.allclose(g1, g2)


def test_bad_inputs_raise_value_error_naming_argument() -> None:
    a, b = _data()
    net = _net()
    with pytest.raises(ValueError, match=r"a must have shape \(batch, heads, dim\)"):
        amcl_loss(a[:, 0], b[:, 0], temperature_fn=net)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        amcl_loss(a, b[:4], temperature_fn=net)
    with pytest.raises(ValueError, match="a needs at least 2 rows"):
        amcl_loss(a[:1], b[:1], temperature_fn=net)
    with pytest.raises(ValueError, match="beta"):
        amcl_loss(a, b, temperature_fn=net, beta=0.0)
    with pytest.raises(ValueError, match="temperature_fn must be callable"):
        amcl_loss(a, b, temperature_fn=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"temperature_fn must return a \(5,\) tensor"):
        amcl_loss(a, b, temperature_fn=lambda x, y, c: torch.ones(1, dtype=D64))
    with pytest.raises(ValueError, match="temperature <= 0"):
        amcl_loss(a, b, temperature_fn=lambda x, y, c: -torch.ones(x.shape[0], dtype=D64))
    with pytest.raises(ValueError, match=r"a must have shape \(batch, 3, 6\)"):
        AMCLLoss(dim=6, num_heads=3)(a.float(), b.float())
    with pytest.raises(ValueError, match="temp_init"):
        PairTemperatureMLP(4, temp_init=5.0)
    with pytest.raises(ValueError, match="lower must be < upper"):
        PairTemperatureMLP(4, lower=2.0, upper=1.0)
    with pytest.raises(ValueError, match="num_heads"):
        AMCLLoss(dim=4, num_heads=0)
    with pytest.raises(ValueError, match="reg_dim"):
        AMCLLoss(dim=4, reg_dim=0)
    bad = a.detach().clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="a contains NaN or inf"):
        amcl_loss(bad, b, temperature_fn=net)
