"""grad_cache_step: parameter gradients equal those of the ordinary full-batch backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import contrastkit as ck

D = torch.float64


def _encoder(d_in: int, seed: int, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 8)).to(
        D
    )


def _grads(*modules: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in modules:
        for p in m.parameters():
            assert p.grad is not None
            out.append(p.grad.clone())
            p.grad = None
    return out


def _data(n: int = 10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 12, generator=g, dtype=D), torch.randn(n, 7, generator=g, dtype=D)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 10, 64])
def test_two_encoders_match_the_full_batch_backward(chunk_size):
    images, texts = _data()
    img, txt = _encoder(12, 1), _encoder(7, 2)
    loss_fn = ck.CLIPLoss(temperature=0.1)
    loss_fn.temperature.log_inverse.data = loss_fn.temperature.log_inverse.data.to(D)

    expected_loss = loss_fn(img(images), txt(texts))
    expected_loss.backward()
    expected = _grads(img, txt, loss_fn)

    loss = ck.grad_cache_step([img, txt], [images, texts], loss_fn, chunk_size)
    torch.testing.assert_close(loss, expected_loss.detach())
    got = _grads(img, txt, loss_fn)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)  # the temperature's gradient included


def test_one_encoder_two_views_with_a_mapping_input():
    class Keyworded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _encoder(12, 3)

        def forward(self, pixels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.net(pixels * scale)

    x, _ = _data(9)
    view1, view2 = x + 0.1, x - 0.1
    scale = torch.linspace(0.5, 1.5, 9, dtype=D)[:, None]
    enc = Keyworded()
    batch1, batch2 = {"pixels": view1, "scale": scale}, {"pixels": view2, "scale": scale}

    ck.nt_xent(enc(**batch1), enc(**batch2), temperature=0.2).backward()
    expected = _grads(enc)
    ck.grad_cache_step([enc, enc], [batch1, batch2], ck.nt_xent, 4, temperature=0.2)
    for g, e in zip(_grads(enc), expected, strict=True):
        torch.testing.assert_close(g, e)


def test_dropout_masks_are_replayed():
    """With dropout the reference is the same chunked forward with the same RNG stream.

    Step 1 draws masks chunk by chunk; if step 3 drew new masks, the gradient of the loss at
    step 1's embeddings would be pushed through different masks and the result would differ.
    """
    images, texts = _data()
    img, txt = _encoder(12, 1, dropout=0.5), _encoder(7, 2, dropout=0.5)
    chunk = 4

    torch.manual_seed(123)
    ref_img = torch.cat([img(images[s : s + chunk]) for s in range(0, 10, chunk)])
    ref_txt = torch.cat([txt(texts[s : s + chunk]) for s in range(0, 10, chunk)])
    ck.clip_loss(ref_img, ref_txt).backward()
    after_reference = torch.rand(1)
    expected = _grads(img, txt)

    torch.manual_seed(123)
    ck.grad_cache_step([img, txt], [images, texts], ck.clip_loss, chunk)
    assert torch.equal(torch.rand(1), after_reference)  # RNG stream continues as one pass
    got = _grads(img, txt)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
    # negative control: other masks give other gradients
    torch.manual_seed(7)
    ck.grad_cache_step([img, txt], [images, texts], ck.clip_loss, chunk)
    assert not all(torch.allclose(g, e) for g, e in zip(_grads(img, txt), expected, strict=True))


def test_errors_name_the_argument():
    images, texts = _data()
    img, txt = _encoder(12, 1), _encoder(7, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        ck.grad_cache_step([img, txt], [images, texts], ck.clip_loss, 0)
    with pytest.raises(ValueError, match="one input per encoder"):
        ck.grad_cache_step([img], [images, texts], ck.clip_loss, 4)
    with pytest.raises(ValueError, match="same number of rows"):
        ck.grad_cache_step([img, txt], [images, texts[:9]], ck.clip_loss, 4)
    with pytest.raises(ValueError, match="scalar"):
        ck.grad_cache_step([img, txt], [images, texts], ck.clip_loss, 4, reduction="none")
    with pytest.raises(ValueError, match=r"\(rows, d\)"):
        ck.grad_cache_step([nn.Flatten(0), txt], [images, texts], ck.clip_loss, 4)
