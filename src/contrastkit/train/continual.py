"""Class-incremental training: a task sequence, a rehearsal buffer and a frozen teacher.

Selected by ``continual.tasks > 0`` (``contrastkit train`` then runs :class:`ContinualTrainer`
instead of the ordinary trainer). The classes are split into ``tasks`` disjoint groups of
``classes_per_task`` (in ``class_order``, or a permutation drawn from ``order_seed``); the model
trains on one group after the other and never sees a finished task's data again, except:

* **the rehearsal buffer** (``buffer_size`` rows, class-balanced: after each task every class
  seen so far keeps ``buffer_size // seen`` rows, the first ``buffer_size % seen`` classes one
  more; ``selection = "random"`` or ``"herding"``, iCaRL's choice of the rows whose running
  feature mean stays closest to the class mean). Each step draws ``replay_batch_size`` buffer rows
  besides the ``train.batch_size`` new-task rows; the terms see them with ``rehearsal_mask``;
* **the teacher**: with ``teacher = true``, the model as it was at the end of the previous task,
  frozen (eval mode, no gradient). Terms that take ``teacher`` get its projections of the batch
  (``student`` is the model's own). They are inactive on the first task (there is no previous
  model): the total loss there is the other terms'.

The classifier is incremental (single-head, class-incremental): a linear layer over every class
whose logits of not-yet-seen classes are masked out, so each task trains and predicts among the
classes seen so far. A ``CrossEntropy`` term is required (it trains that head).

After each task the accuracy on every task seen so far is measured on the test (or validation)
split: the accuracy matrix ``R[t][j]`` and its summaries (:mod:`contrastkit.metrics.continual`),
and two diagnostics that leave the linear head out: iCaRL's nearest-class-mean classifier (cosine
to the mean backbone feature of each class's buffer rows; runs with a buffer only) and a kNN
accuracy on the backbone's features with a bank of training rows of the seen classes
(``continual.eval_knn``; an upper view of the representation, since that bank is not available
to a continual learner). With class-description texts (a ``pairing = "text"`` term), the text
classifier's accuracy (cosine of the image projection to each seen class's projected text, as
zero-shot classification) is measured too (``text_*``).

``joint = true`` is the upper bound: task ``t`` trains on the data of every task up to ``t``.

``random_text = true`` replaces the class descriptions' MiniLM embeddings by random unit vectors
(one per class, seeded): a control telling the language from the mere presence of a per-class
target in a ``pairing = "text"`` term.

Exact resume: the checkpoint holds the model, the teacher, the optimizer and scheduler of the
current task, the buffer, the measured rows and the position (task, epoch, step). Every random
choice (sample order, replayed rows, random selection, augmentation) is drawn from a generator
seeded by ``(seed, task, epoch, step)``, so a run interrupted anywhere and resumed gives the
same numbers as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.data.augment import step_seed
from contrastkit.data.dataset import ArrayDataset
from contrastkit.metrics.continual import continual_summary
from contrastkit.train import checkpoint as ckpt
from contrastkit.train import config as config_mod
from contrastkit.train import evaluation
from contrastkit.train.config import ConfigError
from contrastkit.train.encoder import build_encoder, feature_dim
from contrastkit.train.log import RunLog
from contrastkit.train.model import TrainModel
from contrastkit.train.terms import Streams, Term, build_terms

_MASKED = -1e9  # logit of a class not seen yet (exp underflows to 0 in fp32)


# -- the task sequence ---------------------------------------------------------------------------
def task_classes(
    num_classes: int,
    tasks: int,
    classes_per_task: int,
    class_order: Sequence[int] = (),
    order_seed: int = 0,
) -> list[list[int]]:
    """The classes of each task: ``class_order`` (or a seeded permutation) cut into groups.

    ``order_seed = -1`` keeps the natural order ``0..K-1``.

    Raises:
        ConfigError: the tasks do not cover the classes exactly, or overlap (a class twice),
            naming the ``continual`` key at fault.
    """
    if tasks < 1:
        raise ConfigError(f"continual.tasks: expected >= 1, got {tasks}")
    if classes_per_task < 1:
        raise ConfigError(f"continual.classes_per_task: expected >= 1, got {classes_per_task}")
    if class_order:
        order = list(class_order)
        bad: list[Any] = [c for c in order if isinstance(c, bool) or not isinstance(c, int)]
        bad += [c for c in order if isinstance(c, int) and not 0 <= c < num_classes]
        if bad:
            raise ConfigError(
                f"continual.class_order: expected class ids in 0..{num_classes - 1}, got {bad}"
            )
        twice = sorted({c for c in order if order.count(c) > 1})
        if twice:
            raise ConfigError(
                f"continual.class_order: classes {twice} appear more than once (tasks overlap)"
            )
        missing = sorted(set(range(num_classes)) - set(order))
        if missing:
            raise ConfigError(
                f"continual.class_order: classes {missing} are in no task (the tasks must cover "
                f"the {num_classes} classes)"
            )
    elif order_seed == -1:
        order = list(range(num_classes))
    else:
        g = torch.Generator().manual_seed(order_seed)
        order = torch.randperm(num_classes, generator=g).tolist()
    if tasks * classes_per_task != len(order):
        raise ConfigError(
            f"continual.tasks × continual.classes_per_task = {tasks} × {classes_per_task} = "
            f"{tasks * classes_per_task} does not cover the {len(order)} classes exactly"
        )
    return [order[t * classes_per_task : (t + 1) * classes_per_task] for t in range(tasks)]


@dataclass(frozen=True)
class ContinualSpec:
    """The validated ``[continual]`` table (see the module docstring)."""

    tasks: list[list[int]]
    buffer_size: int
    selection: str
    replay_batch_size: int
    teacher: bool
    epochs: list[int]
    joint: bool
    eval_knn: bool

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], num_classes: int) -> ContinualSpec:
        """Validate ``cfg["continual"]`` for data with ``num_classes`` classes.

        Raises:
            ConfigError: naming the key (tasks, buffer size, epochs, ...).
        """
        c = cfg["continual"]
        tasks = task_classes(
            num_classes, c["tasks"], c["classes_per_task"], c["class_order"], c["order_seed"]
        )
        buffer_size = c["buffer_size"]
        if buffer_size < 0:
            raise ConfigError(f"continual.buffer_size: expected >= 0, got {buffer_size}")
        stored = sum(len(t) for t in tasks[:-1])  # classes the buffer must hold before the last
        if 0 < buffer_size < stored:
            raise ConfigError(
                f"continual.buffer_size: {buffer_size} rows cannot keep one row of each of the "
                f"{stored} classes seen before the last task (0 = no rehearsal)"
            )
        if c["joint"] and buffer_size:
            raise ConfigError(
                "continual.buffer_size: joint training sees every earlier task's data; set it to 0"
            )
        if buffer_size and c["replay_batch_size"] < 1:
            raise ConfigError(
                f"continual.replay_batch_size: expected >= 1, got {c['replay_batch_size']}"
            )
        epochs = list(c["epochs_per_task"]) or [cfg["train"]["epochs"]] * len(tasks)
        if len(epochs) != len(tasks) or any(
            isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs
        ):
            raise ConfigError(
                f"continual.epochs_per_task: expected {len(tasks)} ints >= 1 (one per task) or [], "
                f"got {c['epochs_per_task']}"
            )
        return cls(
            tasks=tasks,
            buffer_size=buffer_size,
            selection=c["selection"],
            replay_batch_size=c["replay_batch_size"],
            teacher=c["teacher"],
            epochs=epochs,
            joint=c["joint"],
            eval_knn=c["eval_knn"],
        )


# -- the rehearsal buffer ------------------------------------------------------------------------
def class_quotas(size: int, classes: Sequence[int]) -> dict[int, int]:
    """Class-balanced quotas: ``size // n`` each, one more for the first ``size % n`` classes."""
    if not classes:
        return {}
    base, extra = divmod(size, len(classes))
    return {c: base + (1 if i < extra else 0) for i, c in enumerate(sorted(classes))}


def herding_order(features: Tensor, m: int) -> list[int]:
    """Herding (iCaRL): ``m`` row indices whose running mean best tracks the class mean.

    Step ``k`` picks the unused row ``i`` minimising ``|| μ - (S_{k-1} + x_i) / k ||`` on
    L2-normalised features, ``μ`` their mean and ``S_{k-1}`` the sum of the rows picked so far.

    Raises:
        ValueError: ``features`` not ``(n, d)`` or ``m`` not in ``0..n``.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (n, d), got {tuple(features.shape)}")
    n = features.shape[0]
    if not 0 <= m <= n:
        raise ValueError(f"m must be in 0..{n}, got {m}")
    x = F.normalize(features.double(), dim=1)
    mu = x.mean(0)
    total = torch.zeros_like(mu)
    used = torch.zeros(n, dtype=torch.bool)
    picked: list[int] = []
    for k in range(1, m + 1):
        dist = (mu[None, :] - (total[None, :] + x) / k).norm(dim=1)
        dist[used] = math.inf
        i = int(dist.argmin())
        picked.append(i)
        used[i] = True
        total += x[i]
    return picked


class RehearsalBuffer:
    """A fixed-size, class-balanced memory of training-set positions.

    Each class keeps its rows in selection-priority order; shrinking a class to a smaller quota
    keeps the first rows (the best ones for herding, a random subset for random selection).

    Args:
        size: the most rows it holds (0: no rehearsal).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.by_class: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_class.values())

    def update(self, ranked: Mapping[int, Sequence[int]]) -> None:
        """Add the new classes' candidates (positions, best first) and rebalance every class."""
        if self.size == 0:
            return
        for c, rows in ranked.items():
            self.by_class[int(c)] = [int(r) for r in rows]
        quotas = class_quotas(self.size, list(self.by_class))
        self.by_class = {c: self.by_class[c][: quotas[c]] for c in sorted(self.by_class)}

    def positions(self) -> Tensor:
        """Every stored position, class by class (``int64``)."""
        rows = [r for c in sorted(self.by_class) for r in self.by_class[c]]
        return torch.tensor(rows, dtype=torch.long)

    def state_dict(self) -> dict[str, Any]:
        """Plain, checkpointable state."""
        return {"size": self.size, "by_class": {str(c): v for c, v in self.by_class.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.size = int(state["size"])
        self.by_class = {int(c): [int(r) for r in v] for c, v in state["by_class"].items()}


# -- a distillation baseline ---------------------------------------------------------------------
class FeatureDistillation(nn.Module):
    """Feature distillation: ``mean_i (1 - cos(student_i, teacher_i))`` over every batch row.

    The plain teacher-student baseline of continual learning (the teacher is the frozen
    previous-task model); config name ``"contrastkit.train.continual:FeatureDistillation"``.
    """

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The mean cosine distance of ``(B, d)`` student and (detached) teacher projections."""
        if student.shape != teacher.shape:
            raise ValueError(
                f"student and teacher must have the same shape, got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        return (1 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()


# -- the trainer ---------------------------------------------------------------------------------
def _generator(*key: int) -> torch.Generator:
    seed, task, epoch, step = (list(key) + [0, 0, 0])[:4]
    return torch.Generator().manual_seed(step_seed(seed, task * 100_003 + epoch, step, 7))


class ContinualTrainer:
    """Trains one config with ``continual.tasks > 0`` into one run directory.

    Args: as :class:`contrastkit.train.trainer.Trainer` (one process only).

    Raises:
        ConfigError: a bad ``[continual]`` table, no ``CrossEntropy`` term, a term that needs a
            teacher with ``continual.teacher = false``, or several processes.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        run_dir: str | os.PathLike[str],
        resume: bool = False,
        *,
        overwrite: bool = False,
        allow_config_change: bool = False,
    ) -> None:
        from contrastkit.train.trainer import (
            build_datasets,
            build_views,
            class_texts,
            config_digest,
            seed_everything,
        )

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.resume, self.overwrite = resume, overwrite
        self.allow_config_change = allow_config_change
        self._digest = config_digest(cfg)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("continual.tasks: class-incremental training runs in one process")
        t = cfg["train"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        if t["batch_size"] < 2:
            raise ConfigError(f"train.batch_size: expected >= 2, got {t['batch_size']}")
        self.device = torch.device(t["device"])
        seed_everything(cfg["seed"])
        self.train_set, _, self.test_set = build_datasets(cfg)
        if self.train_set.labels is None or self.test_set.labels is None:
            raise ConfigError("continual.tasks: class-incremental training needs labelled data")
        self.num_classes = max(self.train_set.num_classes, self.test_set.num_classes)
        self.spec = ContinualSpec.from_config(cfg, self.num_classes)
        terms = build_terms(
            cfg,
            dataset_size=len(self.train_set),
            has_labels=True,
            has_text=True,
            world_size=1,
            continual=True,
        )
        if not any("logits" in term.inputs for term in terms.values()):
            raise ConfigError(
                'objectives: class-incremental training needs a name = "CrossEntropy" term (it '
                "trains the incremental classifier that the accuracy matrix measures)"
            )
        needs_teacher = [n for n, term in terms.items() if "teacher" in term.inputs]
        if needs_teacher and not self.spec.teacher:
            raise ConfigError(
                f"continual.teacher: objectives {needs_teacher} take the teacher's embeddings; "
                "set continual.teacher = true"
            )
        self.class_raw: Tensor | None = None
        self.row_text: Tensor | None = None
        text_dim = 0
        pairs_text = any(term.pairing == "text" for term in terms.values())
        if pairs_text and self.train_set.paired is not None:
            # a second modality per row (data.paired_key): each row's own text, as the paper's
            # per-utterance transcription
            if cfg["continual"]["random_text"]:
                raise ConfigError(
                    "continual.random_text: replaces class descriptions; the data has its own "
                    "paired rows (data.paired_key)"
                )
            self.row_text = self.train_set.paired.float()
            text_dim = int(self.row_text.shape[1])
        elif pairs_text:
            from contrastkit.data.text import embed_texts

            # one embedding per class description, indexed by label (no per-row text)
            self.class_raw = embed_texts(class_texts(cfg, self.train_set.class_names))
            if cfg["continual"]["random_text"]:  # control: same loss, no language
                g = torch.Generator().manual_seed(cfg["seed"] + 1)
                noise = torch.randn(self.class_raw.shape, generator=g)
                self.class_raw = F.normalize(noise, dim=1)
            text_dim = int(self.class_raw.shape[1])
        m = cfg["model"]
        if text_dim and m["text_head"] == "none" and text_dim != m["proj_dim"]:
            raise ConfigError(
                f"model.proj_dim: pairing with text of size {text_dim} needs proj_dim = "
                f"{text_dim} or model.text_head = 'linear'"
            )
        torch.manual_seed(cfg["seed"])
        backbone = build_encoder(m, self.train_set.input_shape)
        fdim = feature_dim(backbone, self.train_set.input_shape)
        self.model = TrainModel(
            backbone,
            fdim,
            m,
            terms,
            text_dim=text_dim,
            num_classes=self.num_classes,
            freeze_encoder=m["freeze_encoder"],
        ).to(self.device)
        self.terms: dict[str, Term] = dict(terms)
        self.augment = build_views(cfg, self.train_set) if cfg["augment"]["enabled"] else None
        self.buffer = RehearsalBuffer(self.spec.buffer_size)
        self.teacher: TrainModel | None = None
        self.matrix: list[list[float]] = []
        self.knn_matrix: list[list[float]] = []
        self.ncm_matrix: list[list[float]] = []
        self.text_matrix: list[list[float]] = []
        self.task, self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0, 0
        self.elapsed = 0.0
        self.task_started = False  # the current task's optimizer and teacher exist
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.log: RunLog | None = None
        labels = self.train_set.labels
        self._train_labels: Tensor = labels
        test_labels = self.test_set.labels
        self._test_labels: Tensor = test_labels

    # -- task data ---------------------------------------------------------------------------
    def seen_classes(self, task: int) -> list[int]:
        """Every class of tasks ``0..task``."""
        return [c for t in self.spec.tasks[: task + 1] for c in t]

    def task_positions(self, task: int) -> Tensor:
        """Training-set positions of the task's new data (joint: of every task up to it)."""
        classes = self.seen_classes(task) if self.spec.joint else self.spec.tasks[task]
        keep = torch.isin(self._train_labels, torch.tensor(classes))
        return torch.nonzero(keep).flatten()

    def steps_per_epoch(self, task: int) -> int:
        """Steps of one epoch of task ``task``."""
        n = len(self.task_positions(task))
        steps = n // int(self.cfg["train"]["batch_size"])
        if steps < 1:
            raise ConfigError(
                f"train.batch_size: {self.cfg['train']['batch_size']} is larger than task "
                f"{task}'s {n} rows"
            )
        return steps

    def _task_steps(self, task: int) -> int:
        return self.spec.epochs[task] * self.steps_per_epoch(task)

    # -- optimisation ------------------------------------------------------------------------
    def _new_optimizer(self, task: int) -> None:
        o = self.cfg["optim"]
        if o["lr"] <= 0:
            raise ConfigError(f"optim.lr: expected > 0, got {o['lr']}")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o["name"] == "sgd":
            self.optimizer = torch.optim.SGD(
                params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"]
            )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])
        total, warmup = self._task_steps(task), o["warmup_steps"]
        cosine = o["schedule"] == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return float((step + 1) / warmup)
            if not cosine:
                return 1.0
            span = max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _new_teacher(self) -> None:
        self.teacher = None
        if self.task > 0 and self.spec.teacher:
            self.teacher = copy.deepcopy(self.model)
            self.teacher.requires_grad_(False)
            self.teacher.eval()

    def _start_task(self) -> None:
        self._new_optimizer(self.task)
        self._new_teacher()
        self.task_started = True

    def _inputs(self, positions: Tensor, step: int) -> Tensor:
        x = self.train_set.batch(positions).inputs.to(self.device)
        if self.augment is not None:
            key = self.task * 100_003 + self.epoch
            x = self.augment(x, key, step, 1)[0]
        return x

    def _step(self, new: Tensor, replay: Tensor) -> dict[str, float]:
        assert self.optimizer is not None and self.scheduler is not None
        positions = torch.cat([new, replay])
        x = self._inputs(positions, self.step_in_epoch)
        labels = self._train_labels[positions].to(self.device)
        rehearsal = torch.cat(
            [torch.zeros(len(new), dtype=torch.bool), torch.ones(len(replay), dtype=torch.bool)]
        ).to(self.device)
        model = self.model
        with torch.set_grad_enabled(not model.freeze_encoder):
            feats = model.backbone(x)
        proj = model.head(feats)
        seen = torch.zeros(self.num_classes, dtype=torch.bool, device=self.device)
        seen[self.seen_classes(self.task)] = True
        assert model.classifier is not None
        logits = model.classifier(feats).masked_fill(~seen, _MASKED)
        text_raw = text = None
        if self.row_text is not None:
            text_raw = self.row_text[positions].to(self.device)
            text = model.embed_text(text_raw)
        elif self.class_raw is not None:
            text_raw = self.class_raw.to(self.device)[labels]
            text = model.embed_text(text_raw)
        teacher = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher.embed(x)
        streams = Streams(
            views=[proj],
            text=text,
            text_raw=text_raw,
            labels=labels,
            index=positions.to(self.device),
            logits=logits,
            teacher=teacher,
            rehearsal_mask=rehearsal,
        )
        losses: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            inactive = ("teacher" in term.inputs and teacher is None) or (
                "rehearsal_mask" in term.inputs and not len(replay)
            )
            losses[name] = proj.new_zeros(()) if inactive else term(streams)
        total = sum((self.terms[n].weight * v for n, v in losses.items()), start=proj.new_zeros(()))
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
            self.optimizer.step()
        self.scheduler.step()
        stats = {"loss": float(total.detach())}
        stats.update({f"loss/{n}": float(v.detach()) for n, v in losses.items()})
        if not all(math.isfinite(v) for v in stats.values()):
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            raise FloatingPointError(
                f"training diverged at task {self.task}, step {self.global_step + 1}: {bad} not "
                "finite; lower optim.lr or check the objectives' params"
            )
        return stats

    def _replay_rows(self, step: int) -> Tensor:
        stored = self.buffer.positions()
        if not len(stored):
            return stored
        g = _generator(self.cfg["seed"], self.task, self.epoch, step + 1)
        k = min(self.spec.replay_batch_size, len(stored))
        return stored[torch.randperm(len(stored), generator=g)[:k]]

    # -- end of a task -----------------------------------------------------------------------
    @torch.no_grad()
    def _features(self, positions: Tensor, data: ArrayDataset) -> Tensor:
        return evaluation.encode(self.model.backbone, data.batch(positions).inputs)

    def _update_buffer(self) -> None:
        if self.spec.buffer_size == 0:
            return
        ranked: dict[int, list[int]] = {}
        quota = class_quotas(self.spec.buffer_size, self.seen_classes(self.task))
        g = _generator(self.cfg["seed"], self.task, 1 << 16)
        for c in self.spec.tasks[self.task]:
            rows = torch.nonzero(self._train_labels == c).flatten()
            if self.spec.selection == "herding":
                feats = self._features(rows, self.train_set)
                order = herding_order(feats, min(quota[c], len(rows)))
                ranked[c] = rows[order].tolist()
            else:
                ranked[c] = rows[torch.randperm(len(rows), generator=g)[: quota[c]]].tolist()
        self.buffer.update(ranked)

    @torch.no_grad()
    def _measure(self) -> None:
        """Append row ``task`` of the accuracy matrices (head; kNN on features)."""
        model = self.model
        model.eval()
        seen = self.seen_classes(self.task)
        seen_t = torch.tensor(seen)
        x_test = self.test_set.float_inputs()
        feats = evaluation.encode(model.backbone, x_test)
        assert model.classifier is not None
        logits = model.classifier(feats.to(self.device)).cpu()
        pred = seen_t[logits[:, seen_t].argmax(1)]
        row = []
        for classes in self.spec.tasks[: self.task + 1]:
            rows = torch.isin(self._test_labels, torch.tensor(classes))
            row.append(float((pred[rows] == self._test_labels[rows]).float().mean()))
        self.matrix.append(row)
        if self.class_raw is not None:  # the class texts as the classifier (zero-shot style)
            protos = F.normalize(model.embed_text(self.class_raw[seen_t].to(self.device)), dim=1)
            proj = F.normalize(model.head(feats.to(self.device)), dim=1)
            text_pred = seen_t[(proj @ protos.T).argmax(1).cpu()]
            text_row = []
            for classes in self.spec.tasks[: self.task + 1]:
                rows = torch.isin(self._test_labels, torch.tensor(classes))
                text_row.append(float((text_pred[rows] == self._test_labels[rows]).float().mean()))
            self.text_matrix.append(text_row)
        stored = self.buffer.positions()
        if len(stored):  # iCaRL's nearest-class-mean classifier on the buffer's features
            bank = F.normalize(self._features(stored, self.train_set), dim=1)
            stored_labels = self._train_labels[stored]
            means = torch.stack([bank[stored_labels == c].mean(0) for c in seen])
            sims = F.normalize(feats, dim=1) @ F.normalize(means, dim=1).T
            ncm_pred = seen_t[sims.argmax(1)]
            ncm_row = []
            for classes in self.spec.tasks[: self.task + 1]:
                rows = torch.isin(self._test_labels, torch.tensor(classes))
                ncm_row.append(float((ncm_pred[rows] == self._test_labels[rows]).float().mean()))
            self.ncm_matrix.append(ncm_row)
        if self.spec.eval_knn:
            bank_rows = torch.nonzero(torch.isin(self._train_labels, seen_t)).flatten()
            g = torch.Generator().manual_seed(self.cfg["seed"])
            cap = self.cfg["eval"]["epoch_knn_train"]
            bank_rows = bank_rows[torch.randperm(len(bank_rows), generator=g)[:cap]]
            bank = self._features(bank_rows, self.train_set)
            from contrastkit.metrics import knn_predict

            e = self.cfg["eval"]
            knn_row = []
            for classes in self.spec.tasks[: self.task + 1]:
                rows = torch.isin(self._test_labels, torch.tensor(classes))
                p = knn_predict(
                    bank,
                    self._train_labels[bank_rows],
                    feats[rows],
                    k=min(e["knn_k"], len(bank_rows)),
                    temperature=e["knn_temperature"],
                    num_classes=self.num_classes,
                )
                knn_row.append(float((p == self._test_labels[rows]).float().mean()))
            self.knn_matrix.append(knn_row)
        model.train()

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        """Folder of ``last.pt`` / ``prev.pt``."""
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        """Everything exact resume needs."""
        return {
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "task_started": self.task_started,
            "buffer": self.buffer.state_dict(),
            "matrix": self.matrix,
            "knn_matrix": self.knn_matrix,
            "ncm_matrix": self.ncm_matrix,
            "text_matrix": self.text_matrix,
            "rng": ckpt.rng_state(),
            "position": {
                "task": self.task,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
            },
            "elapsed_s": self.elapsed,
            "config_digest": self._digest,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        pos = state["position"]
        self.task, self.epoch = int(pos["task"]), int(pos["epoch"])
        self.step_in_epoch, self.global_step = int(pos["step_in_epoch"]), int(pos["global_step"])
        self.buffer.load_state_dict(state["buffer"])
        self.matrix = [list(r) for r in state["matrix"]]
        self.knn_matrix = [list(r) for r in state["knn_matrix"]]
        self.ncm_matrix = [list(r) for r in state["ncm_matrix"]]
        self.text_matrix = [list(r) for r in state["text_matrix"]]
        self.elapsed = float(state["elapsed_s"])
        self.task_started = bool(state["task_started"])
        if self.task_started:
            self._start_task()
            assert self.optimizer is not None and self.scheduler is not None
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.teacher is not None:
                self.teacher.load_state_dict(state["teacher"])
        ckpt.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        """Atomically write ``checkpoints/last.pt`` (the previous one kept as ``prev.pt``)."""
        ckpt.save_atomic(self.state_dict(), self.ckpt_dir / "last.pt", keep_previous=True)

    def _prepare_run_dir(self) -> None:
        holds = any(
            (self.run_dir / n).exists()
            for n in ("checkpoints", "metrics.jsonl", "results.json", "config.toml")
        )
        if self.resume:
            try:
                state, _ = ckpt.load_latest(self.ckpt_dir)
            except ckpt.CheckpointError as err:
                raise ckpt.CheckpointError(
                    f"--resume: cannot resume {self.run_dir}: {err}. Start it again with "
                    "--overwrite (or another --out)"
                ) from err
            if state.get("config_digest") != self._digest and not self.allow_config_change:
                raise ConfigError(
                    f"--resume: {self.run_dir / 'config.toml'} differs from the config the "
                    "checkpoint was trained with; pass --allow-config-change to resume with it"
                )
            self.load_state_dict(state)
            ckpt.clean_temporary(self.ckpt_dir)
            self.log = RunLog(self.run_dir, csv_files=self.cfg["train"]["csv"])
            self.log.truncate(self.global_step)
            return
        if holds:
            if not self.overwrite:
                raise ConfigError(
                    f"--out: {self.run_dir} already holds a run; use --resume {self.run_dir} to "
                    "continue it or --overwrite to start again (its results are deleted)"
                )
            for name in ("checkpoints", "plots"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
            for name in ("results.json", "report.md"):
                (self.run_dir / name).unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(config_mod.dumps(self.cfg))
        self.log = RunLog(self.run_dir, csv_files=self.cfg["train"]["csv"])
        self.log.reset()

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train every task (resuming if asked), measure after each, write the run directory.

        Args:
            stop_after_steps: stop (after a checkpoint) once this many steps have run in this
                call — to test and demonstrate resume; None runs to the end.

        Returns:
            The results (also in ``results.json``); ``{}`` when stopped early.
        """
        self._prepare_run_dir()
        t = self.cfg["train"]
        bs = t["batch_size"]
        every = t["checkpoint_every"]
        ran = 0
        self.model.train()
        while self.task < len(self.spec.tasks):
            if not self.task_started:
                self._start_task()
                evaluation.progress(
                    f"task {self.task}: classes {self.spec.tasks[self.task]}", t["progress"]
                )
            positions = self.task_positions(self.task)
            spe = self.steps_per_epoch(self.task)
            while self.epoch < self.spec.epochs[self.task]:
                g = _generator(self.cfg["seed"], self.task, self.epoch)
                perm = positions[torch.randperm(len(positions), generator=g)]
                while self.step_in_epoch < spe:
                    s = self.step_in_epoch
                    t0 = time.perf_counter()
                    stats = self._step(perm[s * bs : (s + 1) * bs], self._replay_rows(s))
                    self.elapsed += time.perf_counter() - t0
                    self.global_step += 1
                    self.step_in_epoch += 1
                    ran += 1
                    if self.log is not None and self.global_step % max(1, t["log_every"]) == 0:
                        self.log.write(
                            {
                                "kind": "step",
                                "step": self.global_step,
                                "task": self.task,
                                "epoch": self.epoch,
                                **stats,
                            }
                        )
                    stop = stop_after_steps is not None and ran >= stop_after_steps
                    if (every > 0 and self.global_step % every == 0) or stop:
                        self.save_checkpoint()
                    if stop:
                        return {}
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
            self._update_buffer()
            self._measure()
            row = self.matrix[-1]
            record: dict[str, Any] = {
                "kind": "epoch",
                "step": self.global_step,
                "task": self.task,
                "average_accuracy": sum(row) / len(row),
            }
            if self.knn_matrix:
                record["knn_average_accuracy"] = sum(self.knn_matrix[-1]) / len(self.knn_matrix[-1])
            if self.log is not None:
                self.log.write(record)
            evaluation.progress(
                f"after task {self.task}: accuracy per task {[round(a, 4) for a in row]}",
                t["progress"],
            )
            self.task, self.epoch, self.step_in_epoch = self.task + 1, 0, 0
            self.task_started = False
            self.teacher = None
            self.save_checkpoint()
        results = self.results()
        write_continual_outputs(self.run_dir, self.cfg, results)
        return results

    def results(self) -> dict[str, Any]:
        """What ``results.json`` holds: the matrices, their summaries and the run's facts."""
        out: dict[str, Any] = {
            "recipe": self.cfg["name"],
            "seed": self.cfg["seed"],
            "budget": self.cfg["budget"],
            "objectives": {
                n: {"name": s["name"], "weight": s["weight"], "params": s["params"]}
                for n, s in self.cfg["objectives"].items()
            },
            "tasks": self.spec.tasks,
            "buffer_size": self.spec.buffer_size,
            "selection": self.spec.selection,
            "teacher": self.spec.teacher,
            "joint": self.spec.joint,
            "evaluated_on": "validation" if self.cfg["data"]["validation_fraction"] else "test",
            "steps": self.global_step,
            "train_time_s": self.elapsed,
            "accuracy_matrix": self.matrix,
            **continual_summary(self.matrix),
        }
        if self.text_matrix:
            out["text_accuracy_matrix"] = self.text_matrix
            out.update({f"text_{k}": v for k, v in continual_summary(self.text_matrix).items()})
        if len(self.ncm_matrix) == len(self.matrix):
            out["ncm_accuracy_matrix"] = self.ncm_matrix
            out.update({f"ncm_{k}": v for k, v in continual_summary(self.ncm_matrix).items()})
        if self.knn_matrix:
            out["knn_accuracy_matrix"] = self.knn_matrix
            out.update({f"knn_{k}": v for k, v in continual_summary(self.knn_matrix).items()})
        return out


def write_continual_outputs(
    run_dir: str | os.PathLike[str], cfg: Mapping[str, Any], results: Mapping[str, Any]
) -> None:
    """Write ``results.json``, ``plots/accuracy.png`` and ``report.md`` of a continual run."""
    run = Path(run_dir)
    tmp = run / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, run / "results.json")
    plot = plot_accuracy_curves({cfg["name"]: [results["accuracy_matrix"]]}, run / "plots")
    matrix = results["accuracy_matrix"]
    header = "| after task | " + " | ".join(f"task {j}" for j in range(len(matrix))) + " | avg |"
    lines = [
        f"# Continual run report: {cfg['name']}",
        "",
        f"{cfg.get('description', '')}".strip(),
        "",
        f"- tasks (classes): {results['tasks']}",
        f"- buffer: {results['buffer_size']} rows ({results['selection']}), teacher: "
        f"{results['teacher']}, joint: {results['joint']}",
        f"- objectives: {', '.join(f'{n}: {o}' for n, o in results['objectives'].items())}",
        f"- seed {results['seed']}, {results['steps']} steps, {results['train_time_s']:.1f} s",
        "",
        f"Class-incremental accuracy matrix (classifier head, {results['evaluated_on']} split):",
        "",
        header,
        "|" + "---|" * (len(matrix) + 2),
    ]
    for t, row in enumerate(matrix):
        cells = [f"{v:.4f}" for v in row] + [""] * (len(matrix) - len(row))
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {sum(row) / len(row):.4f} |")
    lines += [
        "",
        "| metric | head | NCM (buffer means) | kNN (features) | text classifier |",
        "|---|---|---|---|---|",
    ]
    for key in (
        "final_average_accuracy",
        "average_incremental_accuracy",
        "forgetting",
        "backward_transfer",
    ):
        if key in results:
            other = [results.get(f"{kind}_{key}") for kind in ("ncm", "knn", "text")]
            ncm_knn = " | ".join(f"{v:.4f}" if v is not None else "-" for v in other)
            lines.append(f"| {key} | {results[key]:.4f} | {ncm_knn} |")
    if plot is not None:
        lines += ["", f"![accuracy after each task]({plot})"]
    (run / "report.md").write_text("\n".join(lines) + "\n")


def plot_accuracy_curves(
    curves: Mapping[str, Sequence[Sequence[Sequence[float]]]], folder: str | os.PathLike[str]
) -> str | None:
    """Plot average accuracy after each task, one line per method (mean ± std over runs).

    Args:
        curves: method name → its runs' accuracy matrices.
        folder: where ``accuracy.png`` goes.

    Returns:
        The plot's path relative to the folder's parent, or None without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in curves.items():
        avgs = torch.tensor([[sum(r) / len(r) for r in m] for m in runs], dtype=torch.float64)
        mean = avgs.mean(0)
        x = list(range(1, avgs.shape[1] + 1))
        ax.plot(x, mean.tolist(), marker="o", label=name)
        if avgs.shape[0] > 1:
            std = avgs.std(0)
            ax.fill_between(x, (mean - std).tolist(), (mean + std).tolist(), alpha=0.2)
    ax.set_xticks(list(range(1, max(len(m) for runs in curves.values() for m in runs) + 1)))
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average accuracy on the tasks seen")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    return f"{out.name}/accuracy.png"
