"""Weighted k-nearest-neighbour classifier on cosine similarities (the SSL evaluation protocol).

References:
    [1] Z. Wu, Y. Xiong, S. Yu, D. Lin, "Unsupervised Feature Learning via Non-Parametric Instance
        Discrimination", CVPR 2018 (weighted kNN, k=200, T=0.07).
    [2] M. Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO),
        ICCV 2021 (k=20/200, T=0.07).

"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit._checks import check_positive
from contrastkit.metrics._common import check_class_labels, check_int, prepare


def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
    num_classes: int | None = None,
    check_values: bool = True,
) -> Tensor:
    r"""Weighted-kNN class predictions for ``test_x``.

    For each test row: the ``k`` training rows with the largest cosine similarity ``s``; class
    ``c`` scores :math:`\sum_{j \in topk,\, y_j = c} \exp(s_j / T)`; the prediction is the arg-max
    (the smallest class id on an exact tie). Test rows are processed in blocks of ``chunk_size``
    and training rows in blocks of ``max(chunk_size, k)`` with a running top-k, so memory is
    ``O(chunk_size * (chunk_size + k))``.

    Args:
        train_x: ``(n, d)`` training features (L2-normalised inside).
        train_y: ``(n,)`` integer class ids.
        test_x: ``(m, d)`` test features.
        k: neighbours, ``1 <= k <= n``.
        temperature: ``T > 0`` of the ``exp(s / T)`` vote weights.
        chunk_size: rows per block.
        num_classes: number of classes (default ``max(train_y) + 1``).
        check_values: check for NaN/inf (host sync).

    Returns:
        ``(m,)`` int64 predicted class ids.

    Raises:
        ValueError: bad shapes/dtypes, NaN/inf, ``k > n``, ``temperature <= 0``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> knn_predict(x, torch.tensor([0, 0, 1]), torch.tensor([[0.1, 1.0]]), k=1)
        tensor([1])

    """
    check_int(k, "k")
    check_int(chunk_size, "chunk_size")
    check_positive(temperature, "temperature")
    xtr = prepare(train_x, "train_x", normalize=True, check_values=check_values)
    xte = prepare(test_x, "test_x", normalize=True, check_values=check_values).to(xtr.dtype)
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            "train_x and test_x must have the same dimension, "
            f"got {xtr.shape[1]} and {xte.shape[1]}"
        )
    ytr = check_class_labels(train_y, xtr.shape[0], "train_y").to(xtr.device)
    n = xtr.shape[0]
    if k > n:
        raise ValueError(f"k={k} exceeds the number of training rows ({n})")
    classes = int(ytr.max()) + 1 if num_classes is None else num_classes
    col_block = max(chunk_size, k)
    preds = []
    for start in range(0, xte.shape[0], chunk_size):
        q = xte[start : start + chunk_size]  # (r, d)
        best_s = torch.full((q.shape[0], 0), float("-inf"), dtype=q.dtype, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for cstart in range(0, n, col_block):
            sims = q @ xtr[cstart : cstart + col_block].T  # (r, c)
            idx = torch.arange(cstart, cstart + sims.shape[1], device=q.device).expand_as(sims)
            cand_s = torch.cat([best_s, sims], dim=1)
            cand_i = torch.cat([best_i, idx], dim=1)
            kk = min(k, cand_s.shape[1])
            best_s, pos = cand_s.topk(kk, dim=1)  # (r, kk)
            best_i = cand_i.gather(1, pos)
        weights = (best_s / temperature).exp()  # (r, k)
        votes = torch.zeros(q.shape[0], classes, dtype=weights.dtype, device=q.device)
        votes.scatter_add_(1, ytr[best_i], weights)  # (r, classes)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> float:
    r"""Accuracy of the weighted kNN classifier of Wu et al. [1] / DINO [2] on a test set.

    Cosine similarities, the ``k`` nearest training rows vote with weight :math:`\exp(s/T)`;
    defaults ``k=200, T=0.1`` (``T=0.07`` in [1, 2]). See :func:`knn_predict` for the details.
    Votes are accumulated in fp32 (fp64 for fp64 inputs); with ``T`` small and ``s <= 1`` the
    weights stay below ``e^{1/T}``, which fits fp32 down to ``T ~ 0.012``.

    Args:
        train_x: ``(n, d)`` training features.
        train_y: ``(n,)`` integer class ids.
        test_x: ``(m, d)`` test features.
        test_y: ``(m,)`` integer class ids.
        k: neighbours, ``1 <= k <= n``.
        temperature: ``T > 0``.
        chunk_size: rows per block.

    Returns:
        Test accuracy in ``[0, 1]``.

    Raises:
        ValueError: bad shapes/dtypes, NaN/inf, ``k > n``, ``temperature <= 0``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> knn_accuracy(x, y, x, y, k=1)
        1.0

    """
    yte = check_class_labels(test_y, int(test_x.shape[0]) if test_x.ndim else -1, "test_y")
    if yte.numel() == 0:
        raise ValueError("test_x is empty")
    pred = knn_predict(
        train_x, train_y, test_x, k=k, temperature=temperature, chunk_size=chunk_size
    )
    return float((pred.cpu() == yte.cpu()).double().mean())
