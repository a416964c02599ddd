"""The training loop: config → run directory, with exact resume.

Run directory layout::

    config.toml        the resolved configuration
    metrics.jsonl      one JSON record per logged step ("kind": "step") and per epoch ("epoch")
    checkpoints/       last.pt (atomic, every ``train.checkpoint_every`` steps) and final.pt
    results.json       final evaluation (and baselines)
    plots/             loss.png, temperature.png, metrics.png
    report.md          a short summary

Exact resume: the checkpoint holds the model, objective (parameters such as a learnable
temperature, and buffers such as per-sample state), optimizer, scheduler, global RNG states and
the data position (epoch, step within the epoch). The sample order of each epoch is a permutation
drawn from ``(seed, epoch)`` and the augmentation of each step from ``(seed, epoch, step, view)``,
so a resumed run replays exactly the batches and views of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.data.augment import AugmentConfig, ViewGenerator, build_augmentation, step_seed
from contrastkit.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from contrastkit.data.variants import class_split_indices, long_tailed_indices
from contrastkit.train import checkpoint as ckpt
from contrastkit.train import config as config_mod
from contrastkit.train import evaluation
from contrastkit.train.config import ConfigError
from contrastkit.train.encoder import ContrastiveModel
from contrastkit.train.objectives import Objective, build_objective, current_temperature


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)`` drawn from ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(step_seed(seed, epoch, 0, 1 << 20))
    return torch.randperm(n, generator=g)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_datasets(cfg: Mapping[str, Any]) -> tuple[FashionMNIST, FashionMNIST, FashionMNIST]:
    """Build ``(train, eval_bank, test)``.

    ``train`` is the training set after its variant (class split, long tail, subset),
    ``eval_bank`` the labelled bank for kNN / probes (the balanced train split) and ``test`` the
    test split.
    """
    d = cfg["data"]
    root = d["root"] or None
    full = FashionMNIST.load("train", root)
    test = FashionMNIST.load("test", root)
    train = full
    if d["seen_classes"]:
        bad = [c for c in d["seen_classes"] if not isinstance(c, int) or not 0 <= c < 10]
        if bad:
            raise ConfigError(f"data.seen_classes: expected class ids in 0..9, got {bad}")
        train = train.subset(class_split_indices(train.labels, d["seen_classes"]))
    if d["long_tail_ratio"] < 1:
        raise ConfigError(f"data.long_tail_ratio: expected >= 1, got {d['long_tail_ratio']}")
    if d["long_tail_ratio"] > 1:
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


def class_texts(cfg: Mapping[str, Any]) -> list[str]:
    """The 10 class descriptions: ``text.descriptions`` or the template over the class names."""
    desc = cfg["text"]["descriptions"]
    if desc:
        if len(desc) != len(CLASS_NAMES) or not all(isinstance(s, str) for s in desc):
            raise ConfigError(f"text.descriptions: expected {len(CLASS_NAMES)} strings")
        return list(desc)
    template = cfg["text"]["template"]
    if "{}" not in template:
        raise ConfigError(f"text.template: expected a '{{}}' placeholder, got {template!r}")
    return [template.format(name) for name in CLASS_NAMES]


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


def build_model(cfg: Mapping[str, Any]) -> ContrastiveModel:
    """The encoder + head, initialised from ``seed`` (the random-init baseline is reproducible)."""
    m = cfg["model"]
    torch.manual_seed(cfg["seed"])
    return ContrastiveModel(
        1,
        m["width"],
        m["proj_hidden"],
        m["proj_dim"],
        m["pool"],
        m["feature_dim"],
        m["stem"],
        m["head_bn"],
    )


@torch.no_grad()
def encode(module: nn.Module, images: Tensor, batch_size: int = 2048) -> Tensor:
    """Run ``module`` in eval mode over ``images`` in batches (restores the training mode)."""
    was_training = module.training
    module.eval()
    out = torch.cat([module(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    module.train(was_training)
    return out


class Trainer:
    """Trains one config into one run directory.

    Args:
        cfg: a resolved config (see :mod:`contrastkit.train.config`).
        run_dir: the run directory (created if needed).
        resume: continue from ``run_dir/checkpoints/last.pt`` when it exists.
    """

    def __init__(self, cfg: dict[str, Any], run_dir: str | os.PathLike[str], resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        t = cfg["train"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        if t["batch_size"] < 2:
            raise ConfigError(f"train.batch_size: expected >= 2, got {t['batch_size']}")
        if t["epochs"] < 1 and t["max_steps"] < 1:
            raise ConfigError("train.epochs: expected >= 1 (or train.max_steps >= 1)")
        self.device = torch.device(t["device"])
        seed_everything(cfg["seed"])
        self.train_set, self.bank, self.test_set = build_datasets(cfg)
        n = len(self.train_set)
        self.steps_per_epoch = n // t["batch_size"]
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"train.batch_size: {t['batch_size']} is larger than the training set ({n} images)"
            )
        total = t["epochs"] * self.steps_per_epoch
        self.total_steps = min(total, t["max_steps"]) if t["max_steps"] > 0 else total
        self.text_emb: Tensor | None = None
        pairing = cfg["objective"]["pairing"]
        if pairing == "text" or cfg["eval"]["zero_shot"]:
            from contrastkit.data.text import embed_texts

            self.text_emb = embed_texts(class_texts(cfg)).to(self.device)  # (10, 384)
            if pairing == "text" and cfg["model"]["proj_dim"] != self.text_emb.shape[1]:
                raise ConfigError(
                    f"model.proj_dim: pairing='text' needs proj_dim = {self.text_emb.shape[1]} "
                    f"(the text embedding size), got {cfg['model']['proj_dim']}"
                )
        self.model = build_model(cfg).to(self.device)
        self.init_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.objective: Objective = build_objective(cfg, n)
        self.objective.module.to(self.device)
        self.augment = ViewGenerator(
            build_augmentation(augment_config(cfg)),
            cfg["seed"],
        )
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.elapsed = 0.0
        self.loop_wall_s, self.loop_steps = 0.0, 0

    # -- setup -------------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg["optim"]
        groups = [{"params": list(self.model.parameters()), "weight_decay": o["weight_decay"]}]
        extra = [p for p in self.objective.module.parameters() if p.requires_grad]
        if extra:  # learnable temperature / bias: no weight decay (as CLIP's logit scale)
            groups.append({"params": extra, "weight_decay": 0.0})
        if o["lr"] <= 0:
            raise ConfigError(f"optim.lr: expected > 0, got {o['lr']}")
        if o["name"] == "sgd":
            return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"])
        return torch.optim.AdamW(groups, lr=float(o["lr"]))

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
        """Folder of ``last.pt`` and ``final.pt``."""
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        """Everything exact resume needs."""
        return {
            "model": self.model.state_dict(),
            "objective": self.objective.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "augment_seed": self.augment.seed,
            "position": {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
            },
            "elapsed_s": self.elapsed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.objective.module.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.augment.seed = int(state["augment_seed"])
        pos = state["position"]
        self.epoch, self.step_in_epoch = int(pos["epoch"]), int(pos["step_in_epoch"])
        self.global_step = int(pos["global_step"])
        self.elapsed = float(state.get("elapsed_s", 0.0))

    def save_checkpoint(self, name: str = "last.pt") -> None:
        """Atomically write the current state to ``checkpoints/NAME``."""
        ckpt.save_atomic(self.state_dict(), self.ckpt_dir / name)

    # -- logging -----------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self, upto_step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        keep = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= upto_step
        ]
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)

    # -- training ----------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        last = self.ckpt_dir / "last.pt"
        if self.resume and last.is_file():
            self.load_state_dict(ckpt.load(last))
            self._truncate_metrics(self.global_step)
            print(f"resuming {self.run_dir} at step {self.global_step}", file=sys.stderr)
        else:
            if (self.run_dir / "metrics.jsonl").exists():
                (self.run_dir / "metrics.jsonl").unlink()
            (self.run_dir / "config.toml").write_text(config_mod.dumps(self.cfg))

    def _step(self, positions: Tensor) -> float:
        images, labels, index = self.train_set.batch(positions)
        images, labels = images.to(self.device), labels.to(self.device)
        index = index.to(self.device)
        pairing = self.cfg["objective"]["pairing"]
        weights = None
        if pairing == "text":
            assert self.text_emb is not None
            (view,) = self.augment(images, self.epoch, self.step_in_epoch, num_views=1)
            texts = self.text_emb[labels]  # (B, 384) frozen
            zs = [self.model(view), texts]
            weights = texts
        else:
            views = self.augment(images, self.epoch, self.step_in_epoch, num_views=2)
            z = self.model(torch.cat(views))  # (2B, d): one pass keeps BatchNorm statistics joint
            zs = list(z.chunk(2))
        loss = self.objective(zs, labels, index, weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {float(loss)} at step {self.global_step} (epoch {self.epoch}); "
                "lower optim.lr or check objective.params"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def _epoch_knn(self) -> float:
        e = self.cfg["eval"]
        bank = self.bank.subset(torch.arange(min(e["epoch_knn_train"], len(self.bank))))
        test = self.test_set.subset(torch.arange(min(e["epoch_knn_test"], len(self.test_set))))
        fb = encode(self.model.backbone, bank.float_images().to(self.device)).cpu()
        ft = encode(self.model.backbone, test.float_images().to(self.device)).cpu()
        return evaluation.knn_accuracy(
            fb, bank.labels, ft, test.labels, k=e["knn_k"], temperature=e["knn_temperature"]
        )

    def fit(self) -> dict[str, Any]:
        """Train to the end of the budget (resuming if asked), evaluate, write the run directory."""
        from tqdm import tqdm

        self._prepare_run_dir()
        t = self.cfg["train"]
        bs, log_every = t["batch_size"], max(1, t["log_every"])
        self.model.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            disable=not t["progress"],
            desc=self.cfg["name"],
            unit="step",
            dynamic_ncols=True,
        )
        window_t, window_n = time.perf_counter(), 0
        loop_start, start_step = time.perf_counter(), self.global_step
        while self.global_step < self.total_steps:
            perm = epoch_permutation(len(self.train_set), self.cfg["seed"], self.epoch)
            while self.step_in_epoch < self.steps_per_epoch and self.global_step < self.total_steps:
                s = self.step_in_epoch
                t0 = time.perf_counter()
                loss = self._step(perm[s * bs : (s + 1) * bs])
                self.elapsed += time.perf_counter() - t0
                self.global_step += 1
                self.step_in_epoch += 1
                window_n += bs
                if self.global_step % log_every == 0 or self.global_step == self.total_steps:
                    now = time.perf_counter()
                    ips = window_n / max(now - window_t, 1e-9)
                    window_t, window_n = now, 0
                    temp = current_temperature(self.objective.module)
                    self._log(
                        {
                            "kind": "step",
                            "step": self.global_step,
                            "epoch": self.epoch,
                            "loss": loss,
                            "lr": self.scheduler.get_last_lr()[0],
                            "temperature": temp,
                            "images_per_s": ips,
                        }
                    )
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}")
                bar.update(1)
                end_of_epoch = self.step_in_epoch == self.steps_per_epoch
                if end_of_epoch:
                    if self.cfg["eval"]["epoch_knn"]:
                        acc = self._epoch_knn()
                        self._log(
                            {
                                "kind": "epoch",
                                "step": self.global_step,
                                "epoch": self.epoch,
                                "knn_acc": acc,
                            }
                        )
                        bar.write(f"epoch {self.epoch}: kNN acc (subset) {acc:.4f}")
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                if t["checkpoint_every"] > 0 and self.global_step % t["checkpoint_every"] == 0:
                    self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        self.save_checkpoint("final.pt")
        # wall time of this process's loop, everything included (logging, checkpoints, epoch kNN)
        self.loop_wall_s = time.perf_counter() - loop_start
        self.loop_steps = self.global_step - start_step
        from contrastkit.train.report import evaluate_run, write_outputs

        results = evaluate_run(self)
        write_outputs(self.run_dir, self.cfg, results)
        return results
