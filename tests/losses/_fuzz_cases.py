"""Generated calls of every public loss: valid, extreme and invalid inputs, and how to judge them.

Shared by ``benchmarks/fuzz.py`` (>= 10⁵ calls, an outcome table) and
``tests/losses/test_fuzz_properties.py`` (hypothesis, CI-sized). A call's outcome is one of:

* ``clear_error``   — ``ValueError``/``TypeError`` whose message starts with the name of one of the
  function's arguments (``"labels: ..."``, ``"a and b must ..."``, ``"temperature must ..."``);
* ``correct``       — finite value and gradients that agree with the same call in float64 (for a
  scaled input under ``normalize=True``: with the float64 call on the unscaled input);
* ``silent_nonfinite`` — NaN/inf in the value, a returned state or a gradient, without an error;
* ``silent_suspicious`` — finite, but an invalid input was accepted, the value disagrees with
  float64, an exact 0 with zero gradients came back, or a gradient is out of bounds;
* ``unclear_crash`` — any other exception (deep inside torch, or naming no argument).

Every case is a pure function of ``(target, seed)``: re-running a seed reproduces the call.
"""

from __future__ import annotations

import copy
import inspect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import contrastkit as ck

OUTCOMES = ("clear_error", "correct", "silent_nonfinite", "silent_suspicious", "unclear_crash")

#: Placeholder replaced by a freshly seeded ``torch.Generator`` at each call (so that the float32
#: call and its float64 reference draw the same random numbers).
GEN = "<generator>"

NAN = float("nan")
INF = float("inf")


@dataclass(frozen=True)
class Target:
    """One public loss (or a variant of it) and the inputs it takes.

    Attributes:
        label: row name in the outcome table.
        name: the function's name in ``contrastkit``.
        layout: how the positional inputs are built (see :func:`_positional`).
        fixed: keyword arguments of this variant (tensors built by ``tensors``).
        tensors: ``(B, d, dtype, generator) -> dict`` of tensor keyword arguments.
        temperature: the function takes ``temperature=``.
        normalize, reduction, chunk: it takes these shared options.
        hparams: ``(name, valid values, invalid values)`` of its hyper-parameters.
        ids: it takes ``positive_ids``.
        min_batch: smallest valid batch.
        mixes_inputs: it mixes raw input rows before normalising them (float32 cannot mix rows
            of magnitudes 1e15 and 1 the way float64 does).
    """

    label: str
    name: str
    layout: str
    fixed: dict[str, Any] = field(default_factory=dict)
    tensors: Callable[[int, int, torch.dtype, torch.Generator], dict[str, Any]] | None = None
    temperature: bool = True
    normalize: bool = True
    reduction: bool = True
    chunk: bool = True
    hparams: tuple[tuple[str, tuple[Any, ...], tuple[Any, ...]], ...] = ()
    ids: bool = False
    min_batch: int = 2
    mixes_inputs: bool = False

    @property
    def fn(self) -> Callable[..., Any]:
        """The public function."""
        return getattr(ck, self.name)  # type: ignore[no-any-return]


def _negatives(shape: str) -> Callable[[int, int, torch.dtype, torch.Generator], dict[str, Any]]:
    def build(batch: int, dim: int, dtype: torch.dtype, g: torch.Generator) -> dict[str, Any]:
        size = (5, dim) if shape == "shared" else (batch, 3, dim)
        return {"negatives": torch.randn(*size, generator=g).to(dtype)}

    return build


def _weight_embeddings(batch: int, dim: int, dtype: torch.dtype, g: torch.Generator) -> dict:
    return {"weight_embeddings": torch.randn(batch, 3, generator=g).to(dtype)}


def _clusters(batch: int, dim: int, dtype: torch.dtype, g: torch.Generator) -> dict:
    assignments = torch.randint(0, 3, (batch, 2), generator=g)
    return {"negative_weights": ck.ClusterNegativeWeights(assignments, assignments)}


def _pair_mlp(batch: int, dim: int, dtype: torch.dtype, g: torch.Generator) -> dict:
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    return {"weight_fn": ck.PairMLPWeights(dim).to(dtype)}


def _anchor_mask(batch: int, dim: int, dtype: torch.dtype, g: torch.Generator) -> dict:
    mask = torch.rand(batch, generator=g) < 0.7
    mask[0] = True
    return {"anchor_mask": mask}


_TAU = ("temperature",)
_POS = (0.5, 1.0, 2.0)
_BAD_POS = (0.0, -1.0, NAN, INF)

TARGETS: tuple[Target, ...] = (
    Target("info_nce", "info_nce", "pair", ids=True),
    Target("info_nce(symmetric)", "info_nce", "pair", {"symmetric": True}, ids=True),
    Target("info_nce(negatives K×d)", "info_nce", "pair", tensors=_negatives("shared"), ids=True),
    Target("info_nce(negatives B×K×d)", "info_nce", "pair", tensors=_negatives("per_query")),
    Target("clip_loss", "clip_loss", "pair", ids=True),
    Target("nt_xent", "nt_xent", "pair", ids=True),
    Target(
        "nt_xent(debias_prior)",
        "nt_xent",
        "pair",
        {"debias_prior": 0.1},
        ids=True,
        hparams=(("debias_prior", (0.1, 0.5, 0.9), (-0.1, 1.0, NAN)),),
    ),
    Target(
        "nt_xent(hardness)",
        "nt_xent",
        "pair",
        {"hardness": 1.0},
        ids=True,
        hparams=(("hardness", (0.5, 1.0, 5.0), (-1.0, NAN, INF)),),
    ),
    Target("dcl", "dcl", "pair", ids=True),
    Target("dclw", "dclw", "pair", ids=True, hparams=(("sigma", (0.05, 0.5, 5.0), _BAD_POS),)),
    Target("siglip", "siglip", "pair", hparams=(("bias", (-10.0, 0.0, 10.0), (NAN, INF)),)),
    Target("cwcl", "cwcl", "pair", hparams=(("weight_temperature", (0.1, 1.0), (0.0, -1.0)),)),
    Target("cwcl(weight_embeddings)", "cwcl", "pair", tensors=_weight_embeddings),
    Target(
        "alignment_loss",
        "alignment_loss",
        "pair",
        temperature=False,
        chunk=False,
        hparams=(("alpha", (0.5, 1.0, 2.0, 3.0), _BAD_POS),),
        min_batch=1,
    ),
    Target(
        "uniformity_loss",
        "uniformity_loss",
        "single",
        temperature=False,
        reduction=False,
        hparams=(("t", _POS, _BAD_POS),),
    ),
    Target(
        "align_uniform_loss",
        "align_uniform_loss",
        "pair",
        temperature=False,
        reduction=False,
        hparams=(
            ("align_weight", (0.0, 1.0, 2.0), (-1.0, NAN)),
            ("unif_weight", (0.0, 1.0, 2.0), (-1.0, NAN)),
            ("alpha", _POS, _BAD_POS),
            ("t", _POS, _BAD_POS),
        ),
    ),
    Target(
        "cross_modal_uniformity_loss",
        "cross_modal_uniformity_loss",
        "pair",
        temperature=False,
        reduction=False,
        hparams=(("t", _POS, _BAD_POS),),
    ),
    Target(
        "contrastive_gap_loss",
        "contrastive_gap_loss",
        "pair",
        reduction=False,
        hparams=(("alpha", _POS, _BAD_POS), ("t", _POS, _BAD_POS)),
    ),
    Target("cua_loss", "cua_loss", "pair", reduction=False),
    Target("cuaxu_loss", "cuaxu_loss", "pair", reduction=False),
    Target(
        "hard_contrastive_loss",
        "hard_contrastive_loss",
        "pair",
        hparams=(("alpha", (0.01, 0.5, 1.0), (0.0, 1.5, NAN)), ("num_hard", (1,), (0, -1, 2.5))),
    ),
    Target(
        "hard_simple_loss",
        "hard_simple_loss",
        "pair",
        temperature=False,
        hparams=(("lam", (0.5, 1.0), (0.0, -1.0, NAN)), ("alpha", (0.01, 1.0), (0.0, 2.0))),
    ),
    Target(
        "mixco_loss",
        "mixco_loss",
        "pair",
        {"generator": GEN},
        mixes_inputs=True,
        hparams=(("beta", (0.15, 1.0), _BAD_POS), ("s_thresh", (0.0, 0.5, 1.0), (-0.1, 1.5))),
    ),
    Target(
        "soft_clip_loss",
        "soft_clip_loss",
        "pair",
        hparams=(
            ("target_temperature", (0.05, 1.0), _BAD_POS),
            ("detach_targets", (True,), ()),
        ),
    ),
    Target("weighted_info_nce(clusters)", "weighted_info_nce", "pair", tensors=_clusters),
    Target("weighted_info_nce(weight_fn)", "weighted_info_nce", "pair", tensors=_pair_mlp),
    Target("meow_loss", "meow_loss", "meow"),
    Target("mw_loss", "mw_loss", "pair", min_batch=1),
    Target("mv_info_nce", "mv_info_nce", "views"),
    Target("mv_dhel", "mv_dhel", "views"),
    Target("whitened_cse_loss", "whitened_cse_loss", "views"),
    Target(
        "cacr_loss",
        "cacr_loss",
        "views",
        temperature=False,
        chunk=False,
        hparams=(
            ("alpha", _POS, _BAD_POS),
            ("beta", _POS, _BAD_POS),
            ("pos_temperature", _POS, _BAD_POS),
            ("neg_temperature", _POS, _BAD_POS),
            ("debias_prior", (0.0, 0.5), (1.0, -0.1)),
        ),
    ),
    Target(
        "groco_loss",
        "groco_loss",
        "views",
        {"topk_neg": 1},
        temperature=False,
        chunk=False,
        hparams=(("topk_neg", (1,), (0, 100)), ("steepness", (0.5, 10.0), _BAD_POS)),
    ),
    Target(
        "supcon",
        "supcon",
        "labeled_views",
        hparams=(
            ("base_temperature", (0.07, 1.0), _BAD_POS),
            ("contrast_mode", ("one",), ("x",)),
        ),
    ),
    Target("supcon(labels=None)", "supcon", "views"),
    Target(
        "supremix",
        "supremix",
        "regression_views",
        {"generator": GEN},
        hparams=(
            ("max_label_distance", (1.0, 5.0), _BAD_POS),
            ("negative_beta", ((2.0, 8.0), (1.0, 1.0)), ((0.0, 1.0), (1.0,))),
            ("base_temperature", (0.07,), _BAD_POS),
        ),
    ),
    Target(
        "multi_similarity_loss",
        "multi_similarity_loss",
        "labeled",
        temperature=False,
        chunk=False,
        hparams=(
            ("alpha", (1.0, 2.0, 50.0), _BAD_POS),
            ("beta", (1.0, 50.0), _BAD_POS),
            ("base", (0.0, 0.5), (NAN, INF)),
        ),
    ),
    Target(
        "metrix_contrastive",
        "metrix_contrastive",
        "labeled",
        {"generator": GEN},
        temperature=False,
        reduction=False,
        chunk=False,
        hparams=(
            ("lam", (0.0, 0.5, 1.0), (-0.5, 1.5)),
            ("mix_weight", (0.0, 0.4), (-1.0,)),
            ("mode", ("anchor_negative",), ("x",)),
        ),
    ),
    Target(
        "metrix_multi_similarity",
        "metrix_multi_similarity",
        "labeled",
        {"generator": GEN},
        temperature=False,
        reduction=False,
        chunk=False,
        hparams=(
            ("lam", (0.0, 0.5, 1.0), (-0.5, 1.5)),
            ("alpha", (2.0,), _BAD_POS),
            ("beta", (50.0,), _BAD_POS),
        ),
    ),
    Target(
        "source_supcon",
        "source_supcon",
        "sources",
        tensors=_anchor_mask,
        hparams=(("base_temperature", (0.07,), _BAD_POS), ("exclude_self_positive", (True,), ())),
    ),
    Target(
        "coconut_loss",
        "coconut_loss",
        "coconut",
        hparams=(("teacher_negatives", (True,), ()), ("exclude_self_positive", (True,), ())),
    ),
    Target("moco_loss", "moco_loss", "queue"),
    Target(
        "symile_loss",
        "symile_loss",
        "multi",
        {"generator": GEN},
        chunk=False,
        hparams=(("negative_sampling", ("n_squared",), ("x",)),),
    ),
    Target(
        "gram_loss",
        "gram_loss",
        "multi",
        chunk=False,
        hparams=(
            ("label_smoothing", (0.0, 0.5), (-0.1, 1.0)),
            ("eps", (0.0, 1e-8), (-1.0,)),
        ),
    ),
    Target(
        "amcl_loss",
        "amcl_loss",
        "heads",
        temperature=False,
        chunk=False,
        hparams=(("beta", (0.1, 1.0), _BAD_POS), ("reg_dim", (4,), (0, -1))),
    ),
    Target(
        "sogclr_loss",
        "sogclr_loss",
        "sogclr",
        hparams=(("gamma", (0.1, 0.9, 1.0), (0.0, 1.5, NAN)),),
    ),
    Target(
        "isogclr_loss",
        "isogclr_loss",
        "isogclr",
        temperature=False,
        hparams=(
            ("gamma", (0.1, 1.0), (0.0, 1.5)),
            ("rho", (0.0, 0.3), (-1.0, NAN)),
            ("grad_clip", (3.0,), (0.0, -1.0)),
        ),
    ),
    Target(
        "swav_loss",
        "swav_loss",
        "crops",
        normalize=False,
        chunk=False,
        hparams=(
            ("epsilon", (0.05, 1.0), _BAD_POS),
            ("sinkhorn_iterations", (1, 3), (0, 1.5)),
            ("crops_for_assign", ((0,), (0, 1)), ((), (7,))),
        ),
    ),
)

TARGET_BY_LABEL = {t.label: t for t in TARGETS}


@dataclass
class Case:
    """One generated call.

    Attributes:
        target: the loss.
        kind: the mutation that produced it.
        expect: ``"valid"``, ``"extreme"`` (a correct value or a clear error) or ``"invalid"``
            (only a clear error is right).
        args, kwargs: the call.
        reference: ``(args, kwargs)`` whose float64 value the call must equal (None: the call's
            own inputs in float64).
        autocast: run under CPU bfloat16 autocast.
        grad_bound: largest acceptable gradient magnitude, if bounded.
        seed: the generator seed of ``GEN`` placeholders.
    """

    target: Target
    kind: str
    expect: str
    args: list[Any]
    kwargs: dict[str, Any]
    reference: tuple[list[Any], dict[str, Any]] | None = None
    autocast: bool = False
    grad_bound: float | None = None
    seed: int = 0
    dim: int = 2


# ------------------------------------------------------------------------------------------------
# Building inputs


def _positional(
    layout: str, batch: int, dim: int, views: int, dtype: torch.dtype, g: torch.Generator
) -> tuple[list[Any], list[int], int | None, dict[str, Any]]:
    """Positional inputs of a layout: ``(args, embedding positions, labels position, kwargs)``."""

    def emb(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    classes = max(1, batch // 2)
    labels = torch.randint(0, classes, (batch,), generator=g)
    if layout == "pair":
        return [emb(batch, dim), emb(batch, dim)], [0, 1], None, {}
    if layout == "single":
        return [emb(batch, dim)], [0], None, {}
    if layout == "views":
        return [emb(batch, views, dim)], [0], None, {}
    if layout == "labeled_views":
        return [emb(batch, views, dim), labels], [0], 1, {}
    if layout == "regression_views":
        ages = torch.randint(20, 20 + max(2, batch // 2), (batch,), generator=g)
        return [emb(batch, views, dim), ages], [0], 1, {}
    if layout == "labeled":
        return [emb(batch, dim), labels], [0], 1, {}
    if layout == "sources":
        return [emb(batch, dim), labels, emb(batch, dim), emb(batch, dim)], [0, 2, 3], 1, {}
    if layout == "coconut":
        mask = torch.rand(batch, generator=g) < 0.6
        mask[0] = True
        return [emb(batch, dim), emb(batch, dim), labels, mask], [0, 1], 2, {}
    if layout == "queue":
        return [emb(batch, dim), emb(batch, dim), emb(6, dim)], [0, 1, 2], None, {}
    if layout == "multi":
        count = 2 + int(torch.randint(0, 2, (1,), generator=g))
        return [emb(batch, dim) for _ in range(count)], list(range(count)), None, {}
    if layout == "heads":
        heads = 2
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        net = ck.PairTemperatureMLP(dim, num_heads=heads, hidden_dim=8).to(dtype)
        return (
            [emb(batch, heads, dim), emb(batch, heads, dim)],
            [0, 1],
            None,
            {"temperature_fn": net},
        )
    if layout == "sogclr":
        seen = torch.rand(batch, generator=g) < 0.5
        log_u = torch.randn(batch, generator=g).to(dtype)
        return [emb(batch, dim), emb(batch, dim), log_u, seen], [0, 1], None, {}
    if layout == "isogclr":
        seen = torch.rand(batch, generator=g) < 0.5
        log_u = torch.randn(batch, generator=g).to(dtype)
        tau = (0.05 + 0.5 * torch.rand(batch, generator=g)).to(dtype)
        momentum = torch.zeros(batch, dtype=dtype)
        return [emb(batch, dim), emb(batch, dim), log_u, seen, tau, momentum], [0, 1], None, {}
    if layout == "meow":
        assignments = torch.randint(0, 3, (batch, 2), generator=g)
        return [emb(batch, dim), emb(batch, dim), assignments], [0, 1], None, {}
    if layout == "crops":
        return [emb(views, batch, dim + 1)], [0], None, {}
    raise ValueError(f"unknown layout {layout!r}")


def _scaled(x: Any, factor: float) -> Any:
    return x * factor if isinstance(x, Tensor) and x.is_floating_point() else x


def make_case(target: Target, seed: int, *, mutate: bool = True) -> Case:
    """The call number ``seed`` of ``target`` (deterministic); ``mutate=False``: the valid call."""
    rng = random.Random(f"{target.label}:{seed}")
    g = torch.Generator().manual_seed(seed)
    batch = rng.choice((target.min_batch, 2, 3, 4, 5, 7, 9))
    dim = rng.choice((1, 2, 3, 4, 8))
    views = rng.choice((2, 2, 3))
    dtype = torch.float32
    args, embs, label_pos, kwargs = _positional(target.layout, batch, dim, views, dtype, g)
    kwargs.update(copy.copy(target.fixed))
    if target.tensors is not None:
        kwargs.update(target.tensors(batch, dim, dtype, g))
    if target.temperature:
        kwargs["temperature"] = rng.choice((0.05, 0.1, 0.5, 1.0, 2.0))
    if target.normalize and rng.random() < 0.3:
        kwargs["normalize"] = False
    if target.reduction and rng.random() < 0.3:
        kwargs["reduction"] = rng.choice(("sum", "none"))
    case = Case(target, "random", "valid", args, kwargs, seed=seed, dim=dim)
    mutation = rng.choice(_MUTATIONS)
    if mutate:
        mutation(case, rng, g, embs, label_pos, batch, dim)
    return case


# ------------------------------------------------------------------------------------------------
# Mutations: each edits a valid case in place (and may leave it valid)


def _m_random(case: Case, rng: random.Random, *_: Any) -> None:
    if case.target.chunk and rng.random() < 0.3:
        case.kind, case.kwargs["chunk_size"] = "tiled", rng.choice((1, 2, 3))


def _m_aligned(
    case: Case, rng: random.Random, g: torch.Generator, embs: list[int], *_: Any
) -> None:
    case.kind, case.expect = "aligned", "extreme"
    first = case.args[embs[0]]
    if first.ndim == 3 and len(embs) == 1:  # views: every view equal
        case.args[embs[0]] = first[:, :1].expand_as(first).clone()
    for i in embs[1:]:
        if case.args[i].shape == first.shape:
            case.args[i] = first.clone()


def _m_duplicate_rows(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "duplicate_rows", "extreme"
    for i in embs:
        x = case.args[i]
        case.args[i] = x[:1].expand_as(x).clone()


def _m_scale(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    factor = rng.choice((1e-30, 1e-12, 1e-6, 1e6, 1e18, 1e20))
    case.kind, case.expect = f"scale {factor:g}", "extreme"
    if case.kwargs.get("normalize", True) and case.target.normalize:
        case.reference = (list(case.args), dict(case.kwargs))  # scale invariance
    for i in embs:
        case.args[i] = _scaled(case.args[i], factor)


def _m_huge_row(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "one huge row", "extreme"
    x = case.args[embs[0]].clone()
    x[0] = x[0] * 1e15
    case.args[embs[0]] = x


def _m_zero_row(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "zero row", "extreme"
    x = case.args[embs[0]].clone()
    x[0] = 0.0
    case.args[embs[0]] = x
    if case.target.normalize and case.kwargs.get("normalize", True):
        case.grad_bound = 1e6


def _m_temperature(case: Case, rng: random.Random, *_: Any) -> None:
    if not case.target.temperature:
        return _m_random(case, rng)
    value = rng.choice((1e-4, 1e-3, 1e-2, 1e3, 1e4))
    case.kind, case.expect = f"temperature {value:g}", "extreme"
    case.kwargs["temperature"] = value
    return None


def _m_temperature_tensor(
    case: Case, rng: random.Random, g: Any, embs: Any, lab: Any, batch: int, *_: Any
) -> None:
    if not case.target.temperature:
        return _m_random(case, rng)
    choice = rng.choice(
        ("scalar", "int", "vector", "matrix", "zero", "negative", "nan", "inf", "bool")
    )
    case.kind = f"temperature {choice}"
    case.expect = "valid" if choice in ("scalar", "int") else "invalid"
    value: Any = {
        "scalar": torch.tensor(0.2, requires_grad=True),
        "int": 1,
        "vector": torch.full((batch,), 0.1),
        "matrix": torch.full((2, 2), 0.1),
        "zero": 0.0,
        "negative": -0.1,
        "nan": NAN,
        "inf": INF,
        "bool": True,
    }[choice]
    case.kwargs["temperature"] = value
    return None


def _m_dtype(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    dtype = rng.choice((torch.float16, torch.bfloat16, torch.float64))
    case.kind, case.expect = f"dtype {str(dtype).removeprefix('torch.')}", "valid"
    for i in embs:
        case.args[i] = case.args[i].to(dtype)


def _m_autocast(case: Case, rng: random.Random, *_: Any) -> None:
    case.kind, case.expect, case.autocast = "bf16 autocast", "valid", True


def _m_mixed_dtype(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "mixed float32/float64", "extreme"
    case.args[embs[0]] = case.args[embs[0]].double()


def _m_nonfinite(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    value = rng.choice((NAN, INF, -INF))
    case.kind, case.expect = f"{value} entry", "invalid"
    i = rng.choice(embs)
    x = case.args[i].clone()
    x.view(-1)[rng.randrange(x.numel())] = value
    case.args[i] = x


def _m_int_dtype(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "integer embeddings", "invalid"
    i = rng.choice(embs)
    case.args[i] = case.args[i].round().long()


def _m_not_tensor(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    case.kind, case.expect = "list instead of tensor", "invalid"
    i = rng.choice(embs)
    case.args[i] = case.args[i].tolist()


def _m_shape(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    choice = rng.choice(("drop dim", "extra dim", "fewer rows", "other dim", "no rows", "d = 0"))
    case.kind, case.expect = f"shape: {choice}", "invalid"
    i = rng.choice(embs)
    x = case.args[i]
    if choice == "drop dim":
        x = x[..., 0]
        if case.target.layout in ("labeled_views", "regression_views"):
            case.expect = "extreme"  # (B, d) embeddings: one view
    elif choice == "extra dim":
        x = x.unsqueeze(0)
    elif choice == "fewer rows":
        if len(embs) == 1 and case.target.layout in ("views", "labeled_views", "regression_views"):
            x = x[:, :0]  # no views at all
            case.kind = "shape: no views"
        else:
            x = x[:-1]
            smaller_batch = len(embs) == 1 and case.target.layout != "labeled"
            other_count = (case.target.layout == "queue" and i == 2) or (
                case.target.name == "mw_loss" and i == 0
            )  # the queue, or fewer queries than passages (crops: one crop fewer)
            if smaller_batch or other_count:
                case.expect = "extreme"
    elif choice == "other dim":
        x = torch.cat([x, x[..., :1]], dim=-1)
        if len(embs) == 1:
            case.expect = "valid"
    elif choice == "no rows":
        x = x[:0]
    else:
        x = x[..., :0]
    case.args[i] = x


def _m_one_row(case: Case, rng: random.Random, g: Any, embs: list[int], *_: Any) -> None:
    if case.target.tensors is not None:  # batch-shaped keyword tensors: keep the batch
        return _m_random(case, rng)
    case.kind, case.expect = "batch of 1", "extreme"
    for i, x in enumerate(case.args):
        if case.target.layout == "crops":
            case.args[i] = x[:, :1]
        elif (
            isinstance(x, Tensor) and x.ndim >= 1 and not (case.target.layout == "queue" and i == 2)
        ):
            case.args[i] = x[:1]
    return None


def _m_reduction(case: Case, rng: random.Random, *_: Any) -> None:
    if not case.target.reduction:
        return _m_random(case, rng)
    case.kind, case.expect = "bad reduction", "invalid"
    case.kwargs["reduction"] = rng.choice(("avg", "", None))
    return None


def _m_chunk(case: Case, rng: random.Random, *_: Any) -> None:
    if not case.target.chunk:
        return _m_random(case, rng)
    case.kind, case.expect = "bad chunk_size", "invalid"
    case.kwargs["chunk_size"] = rng.choice((0, -1, 1.5, True))
    return None


def _m_hparam(case: Case, rng: random.Random, *_: Any) -> None:
    if not case.target.hparams:
        return _m_random(case, rng)
    name, valid, invalid = rng.choice(case.target.hparams)
    if invalid and rng.random() < 0.5:
        value, case.expect = rng.choice(invalid), "invalid"
    else:
        value, case.expect = rng.choice(valid), "valid"
    case.kind = f"{name}={value!r}"
    case.kwargs[name] = value
    return None


def _m_check_values_off(case: Case, rng: random.Random, *_: Any) -> None:
    case.kind, case.kwargs["check_values"] = "check_values=False", False


def _m_labels(
    case: Case,
    rng: random.Random,
    g: torch.Generator,
    embs: list[int],
    lab: int | None,
    batch: int,
    *_: Any,
) -> None:
    if lab is None:
        return _m_ids(case, rng, g, embs, lab, batch)
    regression = case.target.layout == "regression_views"
    choice = rng.choice(
        (
            "all equal",
            "all unique",
            "float",
            "short",
            "multi-hot",
            "multi-hot 2",
            "bool",
            "negative",
        )
    )
    labels = case.args[lab]
    case.kind, case.expect = f"labels: {choice}", "extreme"
    if choice == "all equal":
        labels = torch.zeros_like(labels)
    elif choice == "all unique":
        labels = torch.arange(batch)
    elif choice == "float":
        labels = labels.float() + 0.5
        case.expect = "valid" if regression else "invalid"
    elif choice == "short":
        labels, case.expect = labels[:-1], "invalid"
    elif choice == "multi-hot":
        labels = (torch.rand(batch, 3, generator=g) < 0.5).long()
        case.expect = "invalid" if regression else "extreme"
    elif choice == "multi-hot 2":
        labels = torch.randint(0, 3, (batch, 3), generator=g)
        labels[0, 0] = 2
        case.expect = "invalid"
    elif choice == "bool":
        labels = labels > 0  # two classes
        case.expect = "invalid" if regression else "extreme"
    else:
        labels = labels - 5
    case.args[lab] = labels
    return None


def _m_ids(
    case: Case,
    rng: random.Random,
    g: torch.Generator,
    embs: list[int],
    lab: Any,
    batch: int,
    *_: Any,
) -> None:
    if not case.target.ids:
        return _m_random(case, rng)
    choice = rng.choice(("some shared", "all equal", "float", "wrong shape"))
    case.kind = f"positive_ids: {choice}"
    case.expect = {"some shared": "valid", "all equal": "invalid"}.get(choice, "invalid")
    ids = torch.randint(0, max(2, batch // 2), (batch,), generator=g)
    if choice == "all equal":
        ids = torch.zeros(batch, dtype=torch.long)
        if "negatives" in case.kwargs:
            case.expect = "valid"  # the extra negatives remain
    elif choice == "float":
        ids = ids.float()
    elif choice == "wrong shape":
        ids = ids[:-1]
    case.kwargs["positive_ids"] = ids
    return None


def _m_empty_negatives(
    case: Case, rng: random.Random, g: Any, embs: list[int], lab: Any, batch: int, dim: int
) -> None:
    if "negatives" in case.kwargs:
        shape = (0, dim) if case.kwargs["negatives"].ndim == 2 else (batch, 0, dim)
        case.kind, case.expect = f"negatives {shape}", "extreme"
        case.kwargs["negatives"] = torch.empty(shape)
    elif case.target.layout == "queue":
        case.kind, case.expect = "empty queue", "extreme"
        case.args[2] = case.args[2][:0]
    elif case.target.layout == "sogclr" or case.target.layout == "isogclr":
        value = rng.choice((NAN, INF, -INF))
        case.kind, case.expect = f"log_u state {value}", "invalid"
        log_u, seen = case.args[2].clone(), case.args[3].clone()
        log_u[0], seen[0] = value, True
        case.args[2], case.args[3] = log_u, seen
    else:
        _m_random(case, rng)


_MUTATIONS: tuple[Callable[..., Any], ...] = (
    _m_random,
    _m_random,
    _m_aligned,
    _m_duplicate_rows,
    _m_scale,
    _m_scale,
    _m_huge_row,
    _m_zero_row,
    _m_temperature,
    _m_temperature_tensor,
    _m_dtype,
    _m_autocast,
    _m_mixed_dtype,
    _m_nonfinite,
    _m_int_dtype,
    _m_not_tensor,
    _m_shape,
    _m_shape,
    _m_one_row,
    _m_reduction,
    _m_chunk,
    _m_hparam,
    _m_hparam,
    _m_check_values_off,
    _m_labels,
    _m_labels,
    _m_ids,
    _m_empty_negatives,
)


# ------------------------------------------------------------------------------------------------
# Running and judging a case


@dataclass
class Result:
    """Outcome of one case and a one-line reason."""

    outcome: str
    reason: str


def _fresh(value: Any, seed: int) -> Any:
    if isinstance(value, str) and value == GEN:
        return torch.Generator().manual_seed(seed)
    return value


def _leaves(
    args: list[Any], kwargs: dict[str, Any], dtype: torch.dtype | None
) -> tuple[list[Any], dict[str, Any], list[Tensor]]:
    """Copies of the inputs (cast to ``dtype`` if given) with gradients on the float tensors."""
    leaves: list[Tensor] = []

    def prep(x: Any) -> Any:
        if isinstance(x, Tensor) and x.is_floating_point():
            y = x.detach().to(dtype) if dtype is not None else x.detach().clone()
            y.requires_grad_(True)
            leaves.append(y)
            return y
        if isinstance(x, torch.nn.Module) and dtype is not None:
            return copy.deepcopy(x).to(dtype)
        return x

    new_args = [prep(x) for x in args]
    new_kwargs = {k: prep(v) for k, v in kwargs.items()}
    return new_args, new_kwargs, leaves


def _outputs(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, tuple):
        return [v for v in value if isinstance(v, Tensor)]
    return []


def _call(
    case: Case, args: list[Any], kwargs: dict[str, Any], leaves: list[Tensor], autocast: bool
) -> tuple[list[Tensor], list[Tensor | None]]:
    kwargs = {k: _fresh(v, case.seed) for k, v in kwargs.items()}
    torch.manual_seed(case.seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = case.target.fn(*args, **kwargs)
    outs = _outputs(value)
    loss = outs[0]
    grads: list[Tensor | None] = [None] * len(leaves)
    if loss.requires_grad:
        differentiable = [x for x in leaves if x.requires_grad]
        got = torch.autograd.grad(loss.float().sum(), differentiable, allow_unused=True)
        lookup = {id(x): gr for x, gr in zip(differentiable, got, strict=True)}
        grads = [lookup.get(id(x)) for x in leaves]
    return [o.detach() for o in outs], grads


def _names(fn: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(fn).parameters)


#: Mutations whose exact-0 result with zero gradients is the known failure (no negative, no
#: contrast); elsewhere an exact 0 can be genuine (duplicate rows, an underflowing softmax).
_STRUCTURAL = ("batch of 1", "positive_ids: all equal", "labels: all", "shape: fewer rows")

_FIRST_TOKEN = re.compile(r"^\s*`?([A-Za-z_][A-Za-z_0-9]*)")


def names_an_argument(message: str, fn: Callable[..., Any]) -> bool:
    """Whether an error message starts with the name of one of ``fn``'s arguments."""
    match = _FIRST_TOKEN.match(message)
    return match is not None and match.group(1) in _names(fn)


def _amax(t: Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def _dynamic_range(x: Tensor) -> float:
    """Largest over smallest row magnitude (rows along the first dimension)."""
    mags = x.detach().abs().flatten(1).amax(1) if x.numel() else x.new_ones(1)
    low = float(mags.min())
    return float(mags.max()) / low if low > 0 else 1.0


def _finite(tensors: list[Tensor | None]) -> bool:
    return all(t is None or bool(torch.isfinite(t.float()).all()) for t in tensors)


def _close(x: Tensor, ref: Tensor, rtol: float, atol: float) -> bool:
    x, ref = x.double(), ref.double()
    if x.shape != ref.shape:
        return False
    if x.numel() == 0:
        return True
    err = float((x - ref).abs().max())
    return err <= rtol * float(ref.abs().max()) + atol


def _checks_reject(case: Case) -> bool:
    """Whether the call with ``check_values=True`` raises a clear error."""
    checked = copy.copy(case)
    checked.kwargs = {**case.kwargs, "check_values": True}
    try:
        args, kwargs, leaves = _leaves(checked.args, checked.kwargs, None)
        _call(checked, args, kwargs, leaves, checked.autocast)
    except (ValueError, TypeError) as err:
        return names_an_argument(str(err), case.target.fn)
    return False


def run_case(case: Case) -> Result:
    """Call the loss, then judge the outcome (see the module docstring)."""
    fn = case.target.fn
    try:
        args, kwargs, leaves = _leaves(case.args, case.kwargs, None)
        outs, grads = _call(case, args, kwargs, leaves, case.autocast)
    except (ValueError, TypeError) as err:
        if names_an_argument(str(err), fn):
            return Result("clear_error", f"{type(err).__name__}: {err}")
        return Result("unclear_crash", f"{type(err).__name__} naming no argument: {err}")
    except Exception as err:  # noqa: BLE001 - every other exception is the finding
        return Result("unclear_crash", f"{type(err).__name__}: {err}")
    if not _finite([*outs, *grads]):
        if case.kwargs.get("check_values") is False and _checks_reject(case):
            # The caller switched the value checks off; with them on this input is rejected.
            return Result("clear_error", "rejected with check_values=True")
        which = "value" if not _finite(outs) else "gradient"
        return Result("silent_nonfinite", f"non-finite {which}")
    if case.expect == "invalid":
        return Result("silent_suspicious", "invalid input accepted")
    if case.grad_bound is not None and any(
        g is not None and _amax(g) > case.grad_bound for g in grads
    ):
        return Result("silent_suspicious", f"gradient above {case.grad_bound:g}")
    if (
        _amax(outs[0]) == 0
        and all(g is None or _amax(g) == 0 for g in grads)
        and any(g is not None for g in grads)
        and case.kind.startswith(_STRUCTURAL)
        and case.dim > 1  # unit vectors in 1-D are ±1: exact zeros are genuine there
    ):
        return Result("silent_suspicious", "exact 0 with zero gradients")
    ref_args, ref_kwargs = case.reference or (case.args, case.kwargs)
    try:
        r_args, r_kwargs, r_leaves = _leaves(ref_args, ref_kwargs, torch.float64)
        r_outs, r_grads = _call(case, r_args, r_kwargs, r_leaves, False)
    except Exception as err:  # noqa: BLE001
        return Result("silent_suspicious", f"float64 reference failed: {type(err).__name__}: {err}")
    half = any(
        isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16) for x in case.args
    )
    rtol = 3e-2 if half or case.autocast else 1e-3
    # Conditioning: float32 rounds a similarity s to ~6e-8·|s|; with normalize=False and huge
    # (or tiny, underflowing) inputs no float32 computation can match float64 closely.
    tau = case.kwargs.get("temperature", 1.0)
    tau = float(tau) if isinstance(tau, (int, float)) and tau > 0 else 1.0
    peak = max(
        (_amax(x) for x in case.args if isinstance(x, Tensor) and x.is_floating_point()),
        default=1.0,
    )
    normalized = case.target.normalize and case.kwargs.get("normalize", True)
    logit_bound = (1.0 if normalized else max(peak, 1.0) ** 2 * case.dim) / tau
    rounding = 6e-8 * logit_bound
    rows = [x for x in case.args if isinstance(x, Tensor) and x.is_floating_point() and x.ndim > 1]
    spread = max((_dynamic_range(x) for x in rows), default=1.0)
    ill_conditioned = (
        rounding > 1e-3
        or (not normalized and 0 < peak < 1e-15)
        or (case.target.mixes_inputs and spread > 1e6)
    )
    if ill_conditioned and case.target.mixes_inputs:
        return Result("correct", "finite (ill-conditioned: rows of very different magnitudes)")
    if not _close(outs[0], r_outs[0], rtol, 1e-4 + 10 * rounding):
        return Result(
            "silent_suspicious",
            f"value {outs[0].flatten()[:3].tolist()} vs float64 {r_outs[0].flatten()[:3].tolist()}",
        )
    # Rounding of the similarities is amplified by 1/τ in the gradients.
    grad_atol = 1e-4 + 1e-7 * float(r_outs[0].abs().sum()) / tau
    for g32, g64 in zip(grads, r_grads, strict=True):
        if g32 is None or g64 is None or ill_conditioned:
            continue
        if case.reference is not None:
            continue  # the scaled input's gradient scales too; the value checks invariance
        if not _close(g32, g64, 10 * rtol, grad_atol):
            return Result("silent_suspicious", "gradient disagrees with float64")
    return Result("correct", "")
