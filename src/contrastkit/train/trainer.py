"""The training loop: config → run directory, with exact resume, on one process or under torchrun.

Run directory layout::

    config.toml        the resolved configuration
    metrics.jsonl      one JSON record per logged step ("kind": "step") and per epoch ("epoch")
    metrics.csv        the step records as CSV (epochs.csv: the epoch records)
    checkpoints/       last.pt and prev.pt (atomic, checksummed), final.pt at the end
    results.json       final evaluation (and baselines)
    plots/             loss.png, temperature.png, metrics.png, geometry.png
    report.md          a short summary
    skipped.txt        rows left out by data.on_bad = "skip", if any

Exact resume: the checkpoint holds the model (encoder, heads and the loss terms' parameters and
buffers), optimizer, scheduler, grad scaler, global RNG states and the data position (epoch,
step within the epoch). The sample order of each epoch is a permutation drawn from
``(seed, epoch)`` and the views of each step from ``(seed, epoch, step, view)``, so a resumed run
replays exactly the batches and views of an uninterrupted one — also with another number of
processes, since each global batch is the same and is split among the ranks.

Nothing lost: a step that makes the loss or any weight non-finite stops the run with a clear
error before anything is saved (the last good checkpoint stays); checkpoints rotate
``last.pt`` → ``prev.pt`` and are verified on resume; a run directory in use is never
overwritten unless asked.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.data.augment import (
    AugmentConfig,
    VectorAugment,
    ViewGenerator,
    build_augmentation,
    step_seed,
)
from contrastkit.data.dataset import ArrayDataset, stratified_split
from contrastkit.data.sources import load_data
from contrastkit.data.variants import class_split_indices, long_tailed_indices
from contrastkit.train import captioning, evaluation
from contrastkit.train import checkpoint as ckpt
from contrastkit.train import config as config_mod
from contrastkit.train.collapse import CollapseMonitor
from contrastkit.train.config import ConfigError
from contrastkit.train.encoder import build_encoder, feature_dim
from contrastkit.train.log import RunLog, read_records
from contrastkit.train.model import TrainModel
from contrastkit.train.parallel import Context, init_from_env, sync_batchnorm
from contrastkit.train.terms import build_terms, current_temperature

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(FloatingPointError):
    """The loss or a weight became non-finite; the message names the step and what to do."""


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)`` drawn from ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(step_seed(seed, epoch, 0, 1 << 20))
    return torch.randperm(n, generator=g)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def config_digest(cfg: Mapping[str, Any]) -> str:
    """A hash of the resolved config (what resume compares)."""
    return hashlib.sha256(config_mod.dumps(cfg).encode()).hexdigest()[:16]


def build_datasets(cfg: Mapping[str, Any]) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    """Build ``(train, eval_bank, test)`` from ``[data]``.

    ``train`` is the training split after its variant (class split, long tail, subset),
    ``eval_bank`` the labelled bank for kNN / probes (the whole training split, or a random
    ``eval_train_subset`` of it) and ``test`` the test split (or ``eval_test_subset`` of it).
    With ``data.validation_fraction > 0`` the test split is a validation split held out of the
    training split (for choosing hyper-parameters without touching the test set).
    """
    d = cfg["data"]
    full, test = load_data(d, cfg["seed"])
    if d["validation_fraction"] > 0:
        # choose hyper-parameters here: the test split is replaced by rows held out of the
        # training split (stratified, drawn with seed 0 so every seed of a study sees the same)
        tr, va = stratified_split(full.labels, len(full), d["validation_fraction"], 0)
        full, test = full.subset(tr), full.subset(va)
    train = full
    if d["seen_classes"]:
        k = full.num_classes
        bad = [c for c in d["seen_classes"] if not isinstance(c, int) or not 0 <= c < k]
        if full.labels is None or bad:
            raise ConfigError(f"data.seen_classes: expected class ids in 0..{k - 1}, got {bad}")
        train = train.subset(class_split_indices(full.labels, d["seen_classes"]))
    if d["long_tail_ratio"] < 1:
        raise ConfigError(f"data.long_tail_ratio: expected >= 1, got {d['long_tail_ratio']}")
    if d["long_tail_ratio"] > 1:
        if train.labels is None:
            raise ConfigError("data.long_tail_ratio: needs labelled data")
        train = train.subset(long_tailed_indices(train.labels, d["long_tail_ratio"], cfg["seed"]))
    g = torch.Generator().manual_seed(cfg["seed"])
    if d["train_subset"] > 0:
        train = train.subset(torch.randperm(len(train), generator=g)[: d["train_subset"]].sort()[0])
    bank, ev_test = full, test
    if d["eval_train_subset"] > 0:
        bank = full.subset(torch.randperm(len(full), generator=g)[: d["eval_train_subset"]])
    if d["eval_test_subset"] > 0:
        ev_test = test.subset(torch.randperm(len(test), generator=g)[: d["eval_test_subset"]])
    return train, bank, ev_test


def class_texts(cfg: Mapping[str, Any], class_names: tuple[str, ...]) -> list[str]:
    """The class descriptions: ``text.descriptions`` or ``text.template`` over the class names."""
    desc = cfg["text"]["descriptions"]
    if desc:
        if (
            class_names
            and len(desc) != len(class_names)
            or not all(isinstance(s, str) for s in desc)
        ):
            raise ConfigError(f"text.descriptions: expected {len(class_names)} strings")
        return list(desc)
    if not class_names:
        raise ConfigError(
            "text.descriptions: the data has no class names; give one description per class"
        )
    template = cfg["text"]["template"]
    if "{}" not in template:
        raise ConfigError(f"text.template: expected a '{{}}' placeholder, got {template!r}")
    return [template.format(name) for name in class_names]


def augment_config(cfg: Mapping[str, Any]) -> AugmentConfig:
    """The :class:`AugmentConfig` of ``cfg["augment"]``."""
    a = cfg["augment"]
    return AugmentConfig(
        crop_scale=(float(a["crop_scale"][0]), float(a["crop_scale"][1])),
        flip_p=a["flip_p"],
        affine_p=a["affine_p"],
        degrees=a["degrees"],
        translate=a["translate"],
        noise_p=a["noise_p"],
        noise_std=a["noise_std"],
        erase_p=a["erase_p"],
        erase_scale=(float(a["erase_scale"][0]), float(a["erase_scale"][1])),
        jitter_p=a["jitter_p"],
        brightness=a["brightness"],
        contrast=a["contrast"],
        blur_p=a["blur_p"],
        blur_sigma=(float(a["blur_sigma"][0]), float(a["blur_sigma"][1])),
    )


def build_views(cfg: Mapping[str, Any], data: ArrayDataset) -> ViewGenerator:
    """The view generator for images (kornia pipeline) or vectors (dropout + noise)."""
    if data.is_image:
        aug: nn.Module = build_augmentation(augment_config(cfg), size=data.input_shape[-1])
    else:
        aug = VectorAugment(cfg["augment"]["vector_noise"], cfg["augment"]["vector_dropout"])
    return ViewGenerator(aug, cfg["seed"])


@dataclass
class Setup:
    """Everything a config builds before training: data, text, model."""

    train_set: ArrayDataset
    bank: ArrayDataset
    test_set: ArrayDataset
    model: TrainModel
    class_text: list[str] | None
    class_raw: Tensor | None


def build(cfg: Mapping[str, Any], world_size: int = 1) -> Setup:
    """Data, text embeddings and the model (on the CPU, initialised from ``seed``).

    Raises:
        ConfigError / DataError: naming the key or file at fault.
    """
    train, bank, test = build_datasets(cfg)
    train = captioning.attach_captions(cfg, train)  # text.captions: one caption per image
    pairs_text = any(t["pairing"] == "text" for t in cfg["objectives"].values())
    tower = cfg["model"]["text_tower"]
    names = train.class_names
    class_text = None
    if (pairs_text or cfg["eval"]["zero_shot"]) and train.paired is None:
        if cfg["eval"]["zero_shot"] or train.texts is None:
            class_text = captioning.caption_class_texts(cfg, names) or class_texts(cfg, names)
        if train.texts is None:  # pair each row with its class description
            if train.labels is None:
                raise ConfigError("objectives: text pairing needs texts or labels in the data")
            assert class_text is not None
            train = replace(train, texts=[class_text[i] for i in train.labels.tolist()])
    class_raw = None
    text_dim = 0
    if pairs_text or cfg["eval"]["zero_shot"]:
        if train.paired is not None:  # precomputed second modality (embeddings format)
            text_dim = train.paired.shape[1]
        elif tower == "minilm-frozen":
            from contrastkit.data.text import embed_texts

            assert train.texts is not None
            train = captioning.apply_control(cfg, train.with_paired(embed_texts(train.texts)))
            text_dim = train.paired.shape[1]  # type: ignore[union-attr]
            if class_text is not None:
                class_raw = embed_texts(class_text)
        else:
            text_dim = 384
    if (
        cfg["eval"]["zero_shot"]
        and class_text is None
        and train.paired is not None
        and tower != "minilm"
    ):
        raise ConfigError("eval.zero_shot: needs class descriptions (text.descriptions)")
    terms = build_terms(
        cfg,
        dataset_size=len(train),
        has_labels=train.labels is not None,
        has_text=train.paired is not None or train.texts is not None,
        world_size=world_size,
    )
    m = cfg["model"]
    torch.manual_seed(cfg["seed"])
    backbone = build_encoder(m, train.input_shape)
    fdim = feature_dim(backbone, train.input_shape)
    text_tower = None
    if text_dim and tower == "minilm" and train.paired is None:
        from contrastkit.data.text import MiniLMEncoder

        text_tower = MiniLMEncoder()
    if text_dim and m["text_head"] == "none" and text_dim != m["proj_dim"]:
        raise ConfigError(
            f"model.proj_dim: pairing with text of size {text_dim} needs proj_dim = {text_dim} "
            f"or a text head (model.text_head = 'linear'); got proj_dim = {m['proj_dim']}"
        )
    model = TrainModel(
        backbone,
        fdim,
        m,
        terms,
        text_dim=text_dim,
        num_classes=max(train.num_classes, bank.num_classes),
        text_tower=text_tower,
        freeze_encoder=m["freeze_encoder"],
    )
    return Setup(train, bank, test, model, class_text, class_raw)


class Trainer:
    """Trains one config into one run directory.

    Args:
        cfg: a resolved config (see :mod:`contrastkit.train.config`).
        run_dir: the run directory (created if needed).
        resume: continue from the run directory's latest verified checkpoint (an error if there
            is none).
        overwrite: start afresh in a run directory that already holds a run (its checkpoints,
            logs and results are deleted). Without it such a directory is refused.
        allow_config_change: resume although the config differs from the checkpoint's.
        ctx: the process context (default: from the ``torchrun`` environment, else one process).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        run_dir: str | os.PathLike[str],
        resume: bool = False,
        *,
        overwrite: bool = False,
        allow_config_change: bool = False,
        ctx: Context | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.overwrite = overwrite
        self.allow_config_change = allow_config_change
        t = cfg["train"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        if t["batch_size"] < 2:
            raise ConfigError(f"train.batch_size: expected >= 2, got {t['batch_size']}")
        if t["epochs"] < 1 and t["max_steps"] < 1:
            raise ConfigError("train.epochs: expected >= 1 (or train.max_steps >= 1)")
        if t["views"] < 2:
            raise ConfigError(f"train.views: expected >= 2, got {t['views']}")
        self.ctx = ctx if ctx is not None else init_from_env(t["device"])
        self.device = self.ctx.device
        if t["batch_size"] % self.ctx.world_size:
            raise ConfigError(
                f"train.batch_size: {t['batch_size']} does not split evenly over "
                f"{self.ctx.world_size} processes"
            )
        if t["precision"] == "fp16" and self.device.type == "cpu":
            warnings.warn(
                "train.precision = fp16 on the CPU is slow; bf16 is the CPU's format", stacklevel=2
            )
        seed_everything(cfg["seed"])
        setup = build(cfg, self.ctx.world_size)
        self.train_set, self.bank, self.test_set = setup.train_set, setup.bank, setup.test_set
        self.class_text, self.class_raw = setup.class_text, setup.class_raw
        n = len(self.train_set)
        self.steps_per_epoch = n // t["batch_size"]
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"train.batch_size: {t['batch_size']} is larger than the training set ({n} rows)"
            )
        total = t["epochs"] * self.steps_per_epoch
        self.total_steps = min(total, t["max_steps"]) if t["max_steps"] > 0 else total
        self.model = setup.model
        self.init_backbone = copy.deepcopy(self.model.backbone)
        if self.ctx.world_size > 1 and t["sync_batchnorm"]:
            sync_batchnorm(self.model, self.device)
        self.model.to(self.device)
        self.net: nn.Module = self.model
        if self.ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,  # per-sample state stays per rank
            )
        self.terms = self.model.terms
        pairs_views = any(term.pairing == "views" for term in self.terms.values())
        self.num_views = t["views"] if pairs_views else 1
        self.augment = build_views(cfg, self.train_set)
        local_batch, proj_dim = t["batch_size"] // self.ctx.world_size, cfg["model"]["proj_dim"]
        self.collapse = CollapseMonitor(
            self.terms, self.num_views, local_batch, proj_dim, self.device
        )
        self.last_losses: dict[str, float] = {}  # each term's latest logged loss
        # A frozen backbone on un-augmented inputs computes the same features every epoch:
        # compute them once and train the heads on the cache.
        self.feature_cache: Tensor | None = None
        if cfg["model"]["freeze_encoder"] and not cfg["augment"]["enabled"]:
            evaluation.progress(
                f"caching the frozen encoder's features of {len(self.train_set)} rows ...",
                self.ctx.is_main,
            )
            self.feature_cache = evaluation.encode(
                self.model.backbone, self.train_set.float_inputs()
            ).to(self.device)
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.autocast_dtype = _DTYPES[t["precision"]]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t["precision"] == "fp16")
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.elapsed = 0.0  # time inside training steps, over every segment of the run
        self.loop_wall_s = 0.0  # wall time of the training loops, everything included
        self.checkpoint_step = -1
        self.log: RunLog | None = None

    # -- setup -------------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg["optim"]
        if o["lr"] <= 0:
            raise ConfigError(f"optim.lr: expected > 0, got {o['lr']}")
        if o["lr_batch"] < 0:
            raise ConfigError(f"optim.lr_batch: expected >= 0 (0: off), got {o['lr_batch']}")
        lr = float(o["lr"])
        if o["lr_batch"] > 0:  # the linear scaling rule (Goyal et al. 2017)
            lr *= self.cfg["train"]["batch_size"] / o["lr_batch"]
        objective_params = {id(p) for p in self.model.objectives.parameters()}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {
                "params": [p for p in trainable if id(p) not in objective_params],
                "weight_decay": o["weight_decay"],
            }
        ]
        extra = [p for p in trainable if id(p) in objective_params]
        if extra:  # learnable temperature / bias: no weight decay (as CLIP's logit scale)
            groups.append({"params": extra, "weight_decay": 0.0})
        if o["name"] == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=o["momentum"])
        return torch.optim.AdamW(groups, lr=lr)

    def _lr_factor(self, step: int) -> float:
        warmup = self.cfg["optim"]["warmup_steps"]
        if step < warmup:
            return float((step + 1) / warmup)
        if self.cfg["optim"]["schedule"] == "constant":
            return 1.0
        span = max(1, self.total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        """Folder of ``last.pt``, ``prev.pt`` and ``final.pt``."""
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        """Everything exact resume needs."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "augment_seed": self.augment.seed,
            "position": {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
            },
            "elapsed_s": self.elapsed,
            "loop_wall_s": self.loop_wall_s,
            "config_digest": config_digest(self.cfg),
            "world_size": self.ctx.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.augment.seed = int(state["augment_seed"])
        pos = state["position"]
        self.epoch, self.step_in_epoch = int(pos["epoch"]), int(pos["step_in_epoch"])
        self.global_step = int(pos["global_step"])
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.loop_wall_s = float(state.get("loop_wall_s", 0.0))
        self.checkpoint_step = self.global_step

    def save_checkpoint(self, name: str = "last.pt") -> None:
        """Atomically write the current state to ``checkpoints/NAME`` (rank 0 only)."""
        if not self.ctx.is_main:
            return
        ckpt.save_atomic(self.state_dict(), self.ckpt_dir / name, keep_previous=name == "last.pt")
        if name == "last.pt":
            self.checkpoint_step = self.global_step

    # -- run directory -----------------------------------------------------------------------
    def _holds_a_run(self) -> bool:
        return any(
            (self.run_dir / name).exists()
            for name in ("checkpoints", "metrics.jsonl", "results.json", "config.toml")
        )

    def _prepare_run_dir(self) -> bool:
        """Create or reopen the run directory; True when the run is already finished."""
        if self.resume:
            try:
                state, path = ckpt.load_latest(self.ckpt_dir)
            except ckpt.CheckpointError as err:
                raise ckpt.CheckpointError(
                    f"--resume: cannot resume {self.run_dir}: {err}. Start it again with "
                    "--overwrite (or another --out)"
                ) from err
            if state.get("config_digest") not in (None, config_digest(self.cfg)):
                if not self.allow_config_change:
                    raise ConfigError(
                        f"--resume: {self.run_dir / 'config.toml'} differs from the config the "
                        "checkpoint was trained with; pass --allow-config-change to resume with it"
                    )
            self.load_state_dict(state)
            if self.ctx.is_main:
                ckpt.clean_temporary(self.ckpt_dir)
                ckpt.clean_temporary(self.run_dir)
                self.log = RunLog(
                    self.run_dir,
                    csv_files=self.cfg["train"]["csv"],
                    tensorboard=self.cfg["train"]["tensorboard"],
                )
                self.log.truncate(self.global_step)
                if self.allow_config_change:
                    (self.run_dir / "config.toml").write_text(config_mod.dumps(self.cfg))
            evaluation.progress(
                f"resuming {self.run_dir} at step {self.global_step} ({path.name})",
                self.ctx.is_main,
            )
            finished = self.global_step >= self.total_steps
            return finished and (self.run_dir / "results.json").is_file()
        if self._holds_a_run():
            if not self.overwrite:
                raise ConfigError(
                    f"--out: {self.run_dir} already holds a run; use --resume {self.run_dir} to "
                    "continue it or --overwrite to start again (its results are deleted)"
                )
            if self.ctx.is_main:
                for name in ("checkpoints", "plots", "tensorboard"):
                    shutil.rmtree(self.run_dir / name, ignore_errors=True)
                for name in ("results.json", "report.md", "skipped.txt"):
                    (self.run_dir / name).unlink(missing_ok=True)
        self.ctx.barrier()  # every rank has looked before rank 0 writes
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temporary(self.run_dir)
            (self.run_dir / "config.toml").write_text(config_mod.dumps(self.cfg))
            self.log = RunLog(
                self.run_dir,
                csv_files=self.cfg["train"]["csv"],
                tensorboard=self.cfg["train"]["tensorboard"],
            )
            self.log.reset()
            skipped = self.train_set.skipped + self.test_set.skipped
            if skipped:
                (self.run_dir / "skipped.txt").write_text("".join(s + "\n" for s in skipped))
                print(
                    f"data: {len(skipped)} unreadable rows left out (listed in skipped.txt)",
                    file=sys.stderr,
                )
        return False

    # -- one step ----------------------------------------------------------------------------
    def _local(self, rows: Tensor) -> Tensor:
        """This rank's rows of a global-batch tensor."""
        return self.ctx.shard(rows) if self.ctx.world_size > 1 else rows

    def _step(self, positions: Tensor) -> Tensor:
        """One optimisation step on the global batch at ``positions``; returns the loss stats.

        The stats are ``[total, term_1, …]`` (this rank's, detached) followed by a finiteness
        probe of the weights; reading them is the step's only host sync.
        """
        batch = self.train_set.batch(positions)
        if self.feature_cache is not None:
            rows = self.feature_cache[self._local(positions).to(self.device)]
            x = rows.repeat(self.num_views, 1)  # (V·b, F): identical views, frozen features
        elif not self.cfg["augment"]["enabled"]:
            local = self._local(batch.inputs).to(self.device)
            x = local.repeat(self.num_views, *[1] * (local.ndim - 1))  # identical views
        else:
            views = self.augment(
                batch.inputs.to(self.device), self.epoch, self.step_in_epoch, self.num_views
            )
            x = torch.cat([self._local(v) for v in views])  # (V·b, ...)
        labels = self._local(batch.labels).to(self.device) if batch.labels is not None else None
        index = self._local(batch.index).to(self.device)
        text_raw = self._local(batch.paired).to(self.device) if batch.paired is not None else None
        texts = None
        if batch.texts is not None and self.model.text_tower is not None:
            texts = [batch.texts[i] for i in self._local(torch.arange(len(batch.texts))).tolist()]
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype,
            enabled=self.autocast_dtype != torch.float32,
        ):
            cached = self.feature_cache is not None
            losses = self.net(x, self.num_views, labels, index, text_raw, texts, cached)
        total = sum(self.terms[n].weight * v for n, v in losses.items())
        assert isinstance(total, Tensor)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()  # type: ignore[no-untyped-call]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        stats = [total.detach(), *(v.detach() for v in losses.values())]
        if self.cfg["train"]["check_finite"]:
            stats.append(torch.stack([p.detach().sum() for p in self.model.parameters()]).sum())
        return torch.stack([s.float() for s in stats])

    def _diverged(self, stats: list[float]) -> None:
        last = (
            f"the last good checkpoint (step {self.checkpoint_step}) is kept in "
            f"{self.ckpt_dir / 'last.pt'}"
            if self.checkpoint_step >= 0
            else "no checkpoint was written"
        )
        values = dict(zip(["loss", *(f"loss/{n}" for n in self.terms)], stats, strict=False))
        bad = [n for n, v in values.items() if not math.isfinite(v)]
        if len(bad) > 1:  # name the terms at fault, not the total they spoil
            bad = bad[1:]
        what = ", ".join(f"{n} = {values[n]}" for n in bad) if bad else "the weights"
        if not bad:
            for name, p in self.model.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    what = f"weight {name}"
                    break
        raise TrainingDiverged(
            f"training diverged at step {self.global_step + 1} (epoch {self.epoch}): {what} is not "
            f"finite; {last}. Lower optim.lr or check the objectives' params"
        )

    # -- epoch-end measurements --------------------------------------------------------------
    def _epoch_record(self) -> dict[str, Any]:
        e = self.cfg["eval"]
        rec: dict[str, Any] = {"kind": "epoch", "step": self.global_step, "epoch": self.epoch}
        test = self.test_set.subset(torch.arange(min(e["epoch_knn_test"], len(self.test_set))))
        bank = self.bank.subset(torch.arange(min(e["epoch_knn_train"], len(self.bank))))
        if e["epoch_knn"] and bank.labels is not None and test.labels is not None:
            fb = evaluation.encode(self.model.backbone, bank.float_inputs())
            ft = evaluation.encode(self.model.backbone, test.float_inputs())
            rec["knn_acc"] = evaluation.knn_accuracy(
                fb, bank.labels, ft, test.labels, k=e["knn_k"], temperature=e["knn_temperature"]
            )
        if e["epoch_geometry"]:
            # two fixed views of a fixed subset: the curves compare like with like across epochs
            views = self.augment(test.float_inputs(), -1, 0, 2)
            rec.update(evaluation.geometry(self.model, views, test.labels))
        return rec

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the end of the budget (resuming if asked), evaluate, write the run directory.

        Returns:
            The results (also in ``results.json``); on ranks other than 0, an empty dict.

        Raises:
            TrainingDiverged: a non-finite loss or weight (the last good checkpoint is kept).
        """
        from tqdm import tqdm

        if self._prepare_run_dir():
            evaluation.progress(
                f"{self.run_dir} finished at step {self.global_step}: nothing to do "
                f"(re-evaluate with `contrastkit eval {self.run_dir}`)",
                self.ctx.is_main,
            )
            import json

            return dict(json.loads((self.run_dir / "results.json").read_text()))
        t = self.cfg["train"]
        bs, log_every = t["batch_size"], max(1, t["log_every"])
        self.model.train()
        main = self.ctx.is_main
        bar = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            disable=not (t["progress"] and main),
            desc=self.cfg["name"],
            unit="step",
            dynamic_ncols=True,
        )
        window_t, window_n = time.perf_counter(), 0
        loop_start = time.perf_counter()
        wall_before = self.loop_wall_s
        try:
            while self.global_step < self.total_steps:
                perm = epoch_permutation(len(self.train_set), self.cfg["seed"], self.epoch)
                while (
                    self.step_in_epoch < self.steps_per_epoch
                    and self.global_step < self.total_steps
                ):
                    s = self.step_in_epoch
                    t0 = time.perf_counter()
                    stats_t = self._step(perm[s * bs : (s + 1) * bs])
                    log_now = (
                        self.global_step + 1
                    ) % log_every == 0 or self.global_step + 1 == self.total_steps
                    stats: list[float] | None = None
                    if t["check_finite"]:
                        stats = stats_t.tolist()
                        if not all(math.isfinite(v) for v in stats):
                            self._diverged(stats)
                    self.elapsed += time.perf_counter() - t0
                    self.global_step += 1
                    self.step_in_epoch += 1
                    window_n += bs
                    if log_now:
                        n_terms = len(self.terms) + 1
                        mean = self.ctx.mean(stats_t[:n_terms]).tolist()
                        self.last_losses = dict(zip(self.terms, mean[1:], strict=True))
                        now = time.perf_counter()
                        ips = window_n / max(now - window_t, 1e-9)
                        window_t, window_n = now, 0
                        record: dict[str, Any] = {
                            "kind": "step",
                            "step": self.global_step,
                            "epoch": self.epoch,
                            "loss": mean[0],
                        }
                        if len(self.terms) > 1:
                            record.update(
                                {f"loss/{n}": v for n, v in zip(self.terms, mean[1:], strict=True)}
                            )
                        record.update(
                            lr=self.scheduler.get_last_lr()[0],
                            temperature=self._temperature(),
                            images_per_s=ips,
                        )
                        if main and self.log is not None:
                            self.log.write(record)
                        bar.set_postfix(loss=f"{mean[0]:.4f}", rows_s=f"{ips:.0f}")
                    bar.update(1)
                    if self.step_in_epoch == self.steps_per_epoch:
                        if main:
                            rec = self._epoch_record()
                            self.collapse.check(self.last_losses, rec.get("uniformity"))
                            if self.log is not None and len(rec) > 3:
                                self.log.write(rec)
                            if "knn_acc" in rec:
                                bar.write(
                                    f"epoch {self.epoch}: kNN acc (subset) {rec['knn_acc']:.4f}"
                                )
                        self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    if t["checkpoint_every"] > 0 and self.global_step % t["checkpoint_every"] == 0:
                        self.loop_wall_s = wall_before + time.perf_counter() - loop_start
                        self.save_checkpoint()
        finally:
            bar.close()
        self.loop_wall_s = wall_before + time.perf_counter() - loop_start
        self.save_checkpoint()
        self.save_checkpoint("final.pt")
        results: dict[str, Any] = {}
        if main:
            from contrastkit.train.report import write_outputs

            results = self.evaluate()
            write_outputs(self.run_dir, self.cfg, results)
        if self.log is not None:
            self.log.close()
        return results

    def _temperature(self) -> float | None:
        for term in self.terms.values():
            temp = current_temperature(term.module)
            if temp is not None:
                return temp
        return None

    def class_embeddings(self) -> Tensor | None:
        """Projected class-description embeddings for zero-shot, or None."""
        if (
            self.class_text is None
            or not self.cfg["eval"]["zero_shot"]
            and not any(term.pairing == "text" for term in self.terms.values())
        ):
            return None
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            if self.model.text_tower is not None:
                emb = self.model.embed_text(texts=self.class_text)
            else:
                assert self.class_raw is not None
                emb = self.model.embed_text(self.class_raw.to(self.device))
            self.model.train(was)
        return emb.cpu()

    def evaluate(self) -> dict[str, Any]:
        """The final evaluation and the run summary (what ``results.json`` holds)."""
        t0 = time.perf_counter()
        results = evaluation.evaluate_model(
            self.cfg,
            self.model,
            self.init_backbone if self.cfg["eval"]["baselines"] else None,
            self.bank,
            self.test_set,
            self.class_embeddings(),
        )
        steps = [r for r in read_records(self.run_dir) if r["kind"] == "step"]
        bs = self.cfg["train"]["batch_size"]
        results.update(
            {
                "recipe": self.cfg["name"],
                "objectives": {
                    n: {"name": s["name"], "weight": s["weight"], "params": s["params"]}
                    for n, s in self.cfg["objectives"].items()
                },
                "objective": "+".join(s["name"] for s in self.cfg["objectives"].values()),
                "budget": self.cfg["budget"],
                "seed": self.cfg["seed"],
                "steps": self.global_step,
                "epochs": self.global_step / self.steps_per_epoch,
                "train_rows": len(self.train_set),
                "evaluated_on": "validation" if self.cfg["data"]["validation_fraction"] else "test",
                "world_size": self.ctx.world_size,
                "precision": self.cfg["train"]["precision"],
                "train_time_s": self.elapsed,
                "images_per_s": self.global_step * bs / max(self.elapsed, 1e-9),
                "loop_wall_s": self.loop_wall_s,
                "loop_images_per_s": self.global_step * bs / max(self.loop_wall_s, 1e-9),
                "final_loss": steps[-1]["loss"] if steps else None,
                "final_temperature": self._temperature(),
                "eval_s": time.perf_counter() - t0,
            }
        )
        return results
