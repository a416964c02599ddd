"""Evaluating a trained encoder: kNN, linear probe, zero-shot, and per-epoch geometry.

kNN and the linear probe are :func:`contrastkit.metrics.knn_accuracy` and
:func:`contrastkit.metrics.linear_probe` on the backbone's features of a labelled bank (the
training split) and the test split. Zero-shot accuracy compares each image's projection with the
projected embeddings of the class descriptions, in three settings (the usual convention of
zero-shot and generalised zero-shot learning):

* ``seen`` / ``unseen``: samples of those classes, only those classes competing;
* ``generalized``: every class competes; accuracy on the seen samples (``S``), on the unseen
  samples (``U``) and their harmonic mean ``H = 2SU / (S + U)``. A model trained on the seen
  classes scores them higher, so ``U`` (and ``H``) is often near 0; ``generalized_ausuc``, the
  area under the seen–unseen curve over a calibration constant
  (:func:`contrastkit.metrics.zero_shot.ausuc`), is the calibration-free summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.data.dataset import ArrayDataset


def progress(message: str, enabled: bool = True) -> None:
    """One line on stderr (evaluation can take minutes: say what is going on)."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def encode(
    module: nn.Module | Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 2048
) -> Tensor:
    """Run ``module`` in eval mode over ``x`` in batches on its device; CPU result."""
    params = list(module.parameters()) if isinstance(module, nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    was_training = module.training if isinstance(module, nn.Module) else False
    if isinstance(module, nn.Module):
        module.eval()
    try:
        out = torch.cat(
            [
                module(x[i : i + batch_size].to(device)).float().cpu()
                for i in range(0, len(x), batch_size)
            ]
        )
    finally:
        if isinstance(module, nn.Module):
            module.train(was_training)
    return out


def knn_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *, k: int, temperature: float
) -> float:
    """Weighted-kNN top-1 accuracy of ``test_x`` against the labelled bank ``train_x``.

    ``k`` is capped at the bank's size (a small bank, e.g. a tiny budget's, uses all its rows).
    """
    from contrastkit.metrics import knn_accuracy as knn

    k = min(k, len(train_x))
    return float(knn(train_x, train_y, test_x, test_y, k=k, temperature=temperature))


def linear_probe_accuracy(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *, max_iter: int, seed: int
) -> float:
    """Test accuracy of a logistic regression fitted on frozen ``train_x``."""
    from contrastkit.metrics import linear_probe

    return float(
        linear_probe(train_x, train_y, test_x, test_y, max_iter=max_iter, seed=seed).accuracy
    )


def zero_shot_accuracy(
    image_emb: Tensor,
    labels: Tensor,
    class_emb: Tensor,
    classes: Sequence[int],
    among: Sequence[int] | None = None,
) -> float:
    """Accuracy of nearest-class-embedding prediction on the samples of ``classes``.

    ``among`` are the classes that compete (default: ``classes``).

    Raises:
        ValueError: no sample has a label in ``classes``.
    """
    wanted = torch.as_tensor(list(classes), dtype=labels.dtype)
    competing = torch.as_tensor(list(among if among is not None else classes), dtype=labels.dtype)
    keep = torch.isin(labels, wanted)
    if not bool(keep.any()):
        raise ValueError(f"no sample has a label in classes={list(classes)}")
    sims = (
        F.normalize(image_emb[keep].float(), dim=1)
        @ F.normalize(class_emb[competing].float(), dim=1).T
    )
    return float((competing[sims.argmax(1)] == labels[keep]).float().mean())


def zero_shot_table(
    image_emb: Tensor, labels: Tensor, class_emb: Tensor, seen: Sequence[int]
) -> dict[str, Any]:
    """Seen-, unseen- and generalized zero-shot accuracies (see the module docstring)."""
    all_classes = list(range(class_emb.shape[0]))
    seen = list(seen) or all_classes
    unseen = [c for c in all_classes if c not in seen]
    present = set(torch.unique(labels).tolist())
    out: dict[str, Any] = {
        "seen_classes": seen,
        "unseen_classes": unseen,
        "all_way": zero_shot_accuracy(
            image_emb, labels, class_emb, [c for c in all_classes if c in present], all_classes
        ),
        "seen_way": zero_shot_accuracy(image_emb, labels, class_emb, seen),
    }
    if unseen:
        s = zero_shot_accuracy(image_emb, labels, class_emb, seen, all_classes)
        u = zero_shot_accuracy(image_emb, labels, class_emb, unseen, all_classes)
        out.update(
            unseen_way=zero_shot_accuracy(image_emb, labels, class_emb, unseen),
            generalized_seen=s,
            generalized_unseen=u,
            generalized_h=2 * s * u / (s + u) if s + u > 0 else 0.0,
        )
        if bool(torch.isin(labels, torch.as_tensor(unseen, dtype=labels.dtype)).any()):
            from contrastkit.metrics.zero_shot import ausuc

            scores = F.normalize(image_emb.float(), dim=1) @ F.normalize(class_emb.float(), dim=1).T
            out["generalized_ausuc"] = ausuc(scores, labels, seen)
    return out


def probe_row(
    name: str,
    bank_x: Tensor,
    bank_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    e: Mapping[str, Any],
    seed: int,
    show: bool = True,
) -> dict[str, Any]:
    """KNN (and linear-probe) accuracy of one feature set."""
    t0 = time.perf_counter()
    progress(f"  {name}: kNN on {len(bank_x)} x {len(test_x)} ...", show)
    row: dict[str, Any] = {
        "encoder": name,
        "knn_acc": knn_accuracy(
            bank_x, bank_y, test_x, test_y, k=e["knn_k"], temperature=e["knn_temperature"]
        ),
    }
    if e["linear_probe"]:
        progress(f"  {name}: linear probe ({e['probe_max_iter']} iterations max) ...", show)
        row["linear_probe_acc"] = linear_probe_accuracy(
            bank_x, bank_y, test_x, test_y, max_iter=e["probe_max_iter"], seed=seed
        )
    row["eval_s"] = time.perf_counter() - t0
    return row


@torch.no_grad()
def geometry(model: nn.Module, views: Sequence[Tensor], labels: Tensor | None) -> dict[str, float]:
    """Uniformity and tolerance of backbone features and projections, alignment of two views.

    Wang & Isola's alignment / uniformity (t = 2) and Wang & Liu's tolerance, on L2-normalised
    rows; ``views`` are two augmented views of a fixed subset (the first also gives uniformity
    and tolerance).
    """
    from contrastkit.metrics import alignment, tolerance, uniformity

    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    feats = encode(backbone, views[0])
    proj = encode(model.embed, views[0])  # type: ignore[arg-type]
    proj2 = encode(model.embed, views[1])  # type: ignore[arg-type]
    out = {
        "uniformity": float(uniformity(proj)),
        "uniformity_backbone": float(uniformity(feats)),
        "alignment": float(alignment(proj, proj2)),
    }
    if labels is not None and len(torch.unique(labels)) < len(labels):
        out["tolerance"] = float(tolerance(proj, labels))
        out["tolerance_backbone"] = float(tolerance(feats, labels))
    return out


def evaluate_model(
    cfg: Mapping[str, Any],
    model: nn.Module,
    init_backbone: nn.Module | None,
    bank: ArrayDataset,
    test: ArrayDataset,
    class_emb: Tensor | None,
    show: bool = True,
) -> dict[str, Any]:
    """KNN / linear probe of the trained backbone (+ baselines) and zero-shot accuracy.

    Args:
        cfg: the run's config.
        model: the :class:`~contrastkit.train.model.TrainModel`.
        init_backbone: the random-init backbone (baseline), or None.
        bank: labelled bank (kNN neighbours, probe training rows).
        test: the test rows.
        class_emb: projected class-description embeddings ``(K, d)`` for zero-shot, or None.
        show: print progress lines.
    """
    e = cfg["eval"]
    out: dict[str, Any] = {"rows": []}
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    if bank.labels is None or test.labels is None:
        out["note"] = "the data has no labels: no kNN / linear probe"
    else:
        progress(f"evaluating: encoding {len(bank)} bank and {len(test)} test rows ...", show)
        fb, ft = encode(backbone, bank.float_inputs()), encode(backbone, test.float_inputs())
        out["rows"].append(
            probe_row(
                f"trained ({'+'.join(t['name'] for t in cfg['objectives'].values())})",
                fb,
                bank.labels,
                ft,
                test.labels,
                e,
                cfg["seed"],
                show,
            )
        )
        if init_backbone is not None and e["baselines"]:
            out["rows"] += cached_baseline_rows(cfg, init_backbone, bank, test, show)
    if class_emb is not None and test.labels is not None:
        progress("evaluating: zero-shot ...", show)
        emb = encode(model.embed, test.float_inputs())  # type: ignore[arg-type]
        out["zero_shot"] = zero_shot_table(
            emb, test.labels, class_emb.cpu(), cfg["data"]["seen_classes"]
        )
    return out


def baseline_rows(
    cfg: Mapping[str, Any],
    init_backbone: nn.Module,
    bank: ArrayDataset,
    test: ArrayDataset,
    show: bool = True,
) -> list[dict[str, Any]]:
    """Random-init encoder and raw-input rows, evaluated exactly like the trained encoder."""
    assert bank.labels is not None and test.labels is not None
    e, seed = cfg["eval"], cfg["seed"]
    raw = "raw pixels" if bank.is_image else "raw inputs"
    return [
        probe_row(
            "random-init encoder",
            encode(init_backbone, bank.float_inputs()),
            bank.labels,
            encode(init_backbone, test.float_inputs()),
            test.labels,
            e,
            seed,
            show,
        ),
        probe_row(
            raw,
            bank.float_inputs().flatten(1),
            bank.labels,
            test.float_inputs().flatten(1),
            test.labels,
            e,
            seed,
            show,
        ),
    ]


def cached_baseline_rows(
    cfg: Mapping[str, Any],
    init_backbone: nn.Module,
    bank: ArrayDataset,
    test: ArrayDataset,
    show: bool = True,
) -> list[dict[str, Any]]:
    """:func:`baseline_rows`, cached on disk.

    They do not depend on training, so they are cached, keyed by the data rows, the backbone's
    architecture and initial weights, and the evaluation settings.
    """
    from contrastkit.data.text import cache_dir

    weights = hashlib.sha256()
    for name, tensor in init_backbone.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    d = cfg["data"]
    key = json.dumps(
        {
            "data": {
                k: d[k] for k in ("format", "root", "path", "test_path", "image_size", "channels")
            },
            "bank": hashlib.sha256(bank.source_index.numpy().tobytes()).hexdigest(),
            "test": hashlib.sha256(test.source_index.numpy().tobytes()).hexdigest(),
            "backbone": str(init_backbone),
            "weights": weights.hexdigest(),
            "eval": {
                k: cfg["eval"][k]
                for k in ("knn_k", "knn_temperature", "probe_max_iter", "linear_probe")
            },
            "seed": cfg["seed"],
            "version": 3,
        },
        sort_keys=True,
    )
    path = cache_dir() / "baselines" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")
    if path.is_file():
        cached: list[dict[str, Any]] = json.loads(path.read_text())
        return cached
    rows = baseline_rows(cfg, init_backbone, bank, test, show)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)
    return rows
