"""MemoryQueue: FIFO semantics against a Python reference, lightly parity, labels, checkpoints."""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from peers import load_lightly_loss
from torch import nn

from contrastkit.losses.memory_queue import MemoryQueue


def _rows(gen: torch.Generator, n: int, dim: int = 3) -> torch.Tensor:
    return torch.randn(n, dim, generator=gen)


def _as_set(x: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(tuple(r) for r in x.tolist())


@pytest.mark.parametrize("sizes", [[2, 3, 4, 1, 5, 2], [7], [1] * 9, [3, 3, 3, 3]])
def test_fifo_matches_python_deque(sizes: list[int]) -> None:
    """Contents are exactly the newest `size` rows (a deque with maxlen), labels aligned."""
    gen = torch.Generator().manual_seed(0)
    queue = MemoryQueue(size=6, dim=3, with_labels=True)
    ref: collections.deque[tuple[tuple[float, ...], int]] = collections.deque(maxlen=6)
    label = 0
    for n in sizes:
        x = _rows(gen, n)
        y = torch.arange(label, label + n)
        label += n
        queue.enqueue(x, y)
        ref.extend(zip(map(tuple, x.tolist()), y.tolist(), strict=True))
        assert len(queue) == len(ref)
        got = sorted(
            zip(map(tuple, queue.get_features().tolist()), queue.get_labels().tolist(), strict=True)
        )
        assert got == sorted(ref)
    assert queue.is_full == (len(ref) == 6)


def test_write_positions_wrap_around() -> None:
    queue = MemoryQueue(size=4, dim=1)
    queue.enqueue(torch.tensor([[1.0], [2.0], [3.0]]))
    assert int(queue.pointer) == 3 and len(queue) == 3
    queue.enqueue(torch.tensor([[4.0], [5.0]]))  # 4 -> slot 3, 5 -> slot 0 (oldest, 1, dropped)
    assert queue.features.flatten().tolist() == [5.0, 2.0, 3.0, 4.0]
    assert int(queue.pointer) == 1 and len(queue) == 4 and queue.is_full
    # A batch larger than the queue keeps its newest rows.
    queue.enqueue(torch.arange(10.0, 16.0)[:, None])
    assert _as_set(queue.get_features()) == _as_set(torch.arange(12.0, 16.0)[:, None])


def test_reads_only_filled_rows() -> None:
    queue = MemoryQueue(size=8, dim=2)
    assert queue.get_features().shape == (0, 2)
    queue.enqueue(torch.ones(3, 2))
    assert queue.get_features().shape == (3, 2)
    assert torch.equal(queue.get_features(), torch.ones(3, 2))


def test_lightly_memory_bank_parity() -> None:
    """Where lightly's bank is defined the same way (batch divides size), contents agree."""
    load_lightly_loss()  # skips with the import error if lightly (or its torchvision) is absent
    from lightly.models.modules import memory_bank

    bank = memory_bank.MemoryBankModule(size=(8, 3), feature_dim_first=False)
    queue = MemoryQueue(size=8, dim=3)
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        x = _rows(gen, 4)
        _, before = bank(x, update=True)
        if step >= 2:  # once both are full, the negatives served before the update match
            assert torch.equal(before, queue.get_features())
        queue.enqueue(x)
    assert torch.equal(bank.bank, queue.features)
    assert int(bank.bank_ptr) == int(queue.pointer)


def test_enqueue_detaches_and_copies() -> None:
    queue = MemoryQueue(size=4, dim=2)
    x = torch.randn(2, 2, requires_grad=True)
    queue.enqueue(x * 2)
    assert not queue.get_features().requires_grad
    y = torch.zeros(2, 2)
    queue.enqueue(y)
    y += 1  # the queue holds a copy
    assert torch.equal(queue.get_features()[2:], torch.zeros(2, 2))


def test_dtype_cast_and_module_moves() -> None:
    queue = MemoryQueue(size=4, dim=2).double()
    queue.enqueue(torch.ones(2, 2, dtype=torch.float32))
    assert queue.get_features().dtype == torch.float64
    half = MemoryQueue(size=4, dim=2, dtype=torch.float16)
    half.enqueue(torch.randn(3, 2))
    assert half.get_features().dtype == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_device() -> None:
    queue = MemoryQueue(size=4, dim=2, with_labels=True).cuda()
    queue.enqueue(torch.randn(3, 2, device="cuda"), torch.arange(3, device="cuda"))
    assert queue.get_features().device.type == "cuda"
    assert queue.get_labels().tolist() == [0, 1, 2]


def test_state_dict_round_trip_and_resume() -> None:
    gen = torch.Generator().manual_seed(2)
    batches = [(_rows(gen, 3), torch.arange(3) + 10 * i) for i in range(5)]
    straight = MemoryQueue(size=5, dim=3, with_labels=True)
    for x, y in batches:
        straight.enqueue(x, y)
    first = MemoryQueue(size=5, dim=3, with_labels=True)
    for x, y in batches[:2]:
        first.enqueue(x, y)
    state = copy.deepcopy(first.state_dict())
    assert set(state) == {"features", "labels", "pointer", "filled"}
    # Restored inside a parent module (how a trainer checkpoints it).
    parent = nn.Module()
    parent.queue = MemoryQueue(size=5, dim=3, with_labels=True)
    parent.load_state_dict({f"queue.{k}": v for k, v in state.items()})
    resumed = parent.queue
    assert len(resumed) == len(first) == 5 and int(resumed.pointer) == int(first.pointer)
    for x, y in batches[2:]:
        resumed.enqueue(x, y)
    assert torch.equal(resumed.features, straight.features)
    assert torch.equal(resumed.get_labels(), straight.get_labels())
    assert len(resumed) == len(straight)
    # Negative control: a fresh queue fed only the tail differs.
    fresh = MemoryQueue(size=5, dim=3, with_labels=True)
    for x, y in batches[2:]:
        fresh.enqueue(x, y)
    assert not torch.equal(fresh.features, straight.features)


def test_state_dict_without_labels_has_no_label_key() -> None:
    queue = MemoryQueue(size=3, dim=2)
    assert set(queue.state_dict()) == {"features", "pointer", "filled"}


def test_inconsistent_state_dict_is_rejected() -> None:
    state = MemoryQueue(size=3, dim=2).state_dict()
    state["filled"] = torch.tensor(7)
    with pytest.raises(ValueError, match="inconsistent with size=3"):
        MemoryQueue(size=3, dim=2).load_state_dict(state)


def test_supervised_use_labels_give_positive_mask() -> None:
    """Labels let a supervised loss find positives in the queue."""
    queue = MemoryQueue(size=6, dim=2, with_labels=True)
    queue.enqueue(torch.randn(4, 2), torch.tensor([0, 1, 2, 1]))
    batch_labels = torch.tensor([1, 3])
    mask = batch_labels[:, None] == queue.get_labels()[None, :]
    assert mask.tolist() == [[False, True, False, True], [False, False, False, False]]


def test_reset() -> None:
    queue = MemoryQueue(size=3, dim=2, with_labels=True)
    queue.enqueue(torch.ones(2, 2), torch.tensor([1, 2]))
    queue.reset()
    assert len(queue) == 0 and int(queue.pointer) == 0 and queue.get_labels().numel() == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="size must be a positive integer"):
        MemoryQueue(size=0, dim=3)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        MemoryQueue(size=3, dim=-1)
    with pytest.raises(ValueError, match="dtype"):
        MemoryQueue(size=3, dim=2, dtype=torch.long)
    queue = MemoryQueue(size=4, dim=3)
    with pytest.raises(ValueError, match=r"features must have shape \(n, 3\)"):
        queue.enqueue(torch.randn(2, 4))
    with pytest.raises(ValueError, match="features must have shape"):
        queue.enqueue(torch.randn(3))
    bad = torch.randn(2, 3)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="features contains NaN or inf"):
        queue.enqueue(bad)
    with pytest.raises(ValueError, match="with_labels=False"):
        queue.enqueue(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="with_labels=False"):
        queue.get_labels()
    labelled = MemoryQueue(size=4, dim=3, with_labels=True)
    with pytest.raises(ValueError, match="labels are required"):
        labelled.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        labelled.enqueue(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be integer"):
        labelled.enqueue(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    assert len(queue) == 0 and len(labelled) == 0  # failed calls wrote nothing
