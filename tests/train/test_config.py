from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit.train import config as C
from contrastkit.train.config import ConfigError


def test_every_shipped_recipe_resolves_with_each_budget() -> None:
    recipes = C.list_recipes()
    assert {"simclr-fmnist", "supcon-fmnist", "longtail-fmnist", "cwcl-zeroshot"} <= set(recipes)
    for name in recipes:
        raw = C.load_toml(C.recipe_path(name))
        for budget in ["", *raw.get("budgets", {})]:
            cfg = C.resolve(raw, {"budget": budget})
            assert cfg["name"] == name and cfg["budget"] == budget


def test_precedence_defaults_recipe_budget_set() -> None:
    raw = {"train": {"epochs": 7}, "budgets": {"short": {"train.epochs": 2, "optim.lr": 0.5}}}
    assert C.resolve(raw)["train"]["epochs"] == 7
    cfg = C.resolve(raw, {"budget": "short"})
    assert cfg["train"]["epochs"] == 2 and cfg["optim"]["lr"] == 0.5
    cfg = C.resolve(raw, {"budget": "short", "train.epochs": 5})
    assert cfg["train"]["epochs"] == 5
    assert C.resolve({}, {"optim.lr": 1})["optim"]["lr"] == 1.0  # int accepted for a float
    assert isinstance(C.resolve({}, {"optim.lr": 1})["optim"]["lr"], float)


def test_set_values_parse_as_toml() -> None:
    got = C.parse_overrides(["a=3", "b=0.5", "c=true", "d=[1, 2]", "e=DCLLoss", 'f="x y"'])
    assert got == {"a": 3, "b": 0.5, "c": True, "d": [1, 2], "e": "DCLLoss", "f": "x y"}
    with pytest.raises(ConfigError, match="key=value"):
        C.parse_overrides(["novalue"])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"train.epoch": 3}, "train.epoch"),
        ({"trian.epochs": 3}, "trian.epochs"),
        ({"train.epochs": "three"}, "train.epochs"),
        ({"train.epochs": 2.5}, "train.epochs"),
        ({"train.progress": 1}, "train.progress"),
        ({"optim.name": "lamb"}, "optim.name"),
        ({"objective.pairing": "audio"}, "objectives.main.pairing"),
        ({"objectives.ce.weight": "high"}, "objectives.ce.weight"),
        ({"objectives.ce.wieght": 1.0}, "objectives.ce.wieght"),
        ({"train.precision": "fp8"}, "train.precision"),
        ({"data.format": "parquet"}, "data.format"),
        ({"budget": "huge"}, "budget"),
    ],
)
def test_bad_config_names_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        C.resolve({"budgets": {"short": {}}}, overrides)


def test_unknown_recipe_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*simclr-fmnist"):
        C.recipe_path("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_toml(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        C.load_toml(bad)


def test_dumps_roundtrips() -> None:
    cfg = C.resolve(C.load_toml(C.recipe_path("cwcl-zeroshot")), {"budget": "short"})
    import tomllib

    assert C.resolve(tomllib.loads(C.dumps(cfg))) == cfg


def test_objective_is_short_for_objectives_main() -> None:
    raw = {"objective": {"name": "DCLLoss", "params": {"temperature": 0.3}}}
    cfg = C.resolve(raw, {"objectives.ce.name": "CrossEntropy", "objectives.ce.weight": 0.5})
    assert list(cfg["objectives"]) == ["main", "ce"]
    assert cfg["objectives"]["main"] == {
        "name": "DCLLoss",
        "weight": 1.0,
        "params": {"temperature": 0.3},
        "pairing": "views",
        "positive_ids": "none",
    }
    assert cfg["objectives"]["ce"]["weight"] == 0.5 and cfg["objectives"]["ce"]["params"] == {}
    assert C.resolve({}, {"objective.params.temperature": 0.2})["objectives"]["main"]["params"] == {
        "temperature": 0.2
    }
    assert C.resolve({})["objectives"] == {"main": dict(C.TERM_DEFAULTS)}  # InfoNCE by default
    with pytest.raises(ConfigError, match="not both"):
        C.resolve({"objective": {}, "objectives": {"main": {}}})


def test_switching_objective_drops_params_it_does_not_accept() -> None:
    # the documented example: the recipe's symmetric = true must not break DCLLoss
    raw = C.load_toml(C.recipe_path("simclr-fmnist"))
    assert raw["objective"]["params"]["symmetric"] is True
    with pytest.warns(UserWarning, match=r"DCLLoss takes no \['symmetric'\]"):
        cfg = C.resolve(raw, {"objective.name": "DCLLoss"})
    assert cfg["objectives"]["main"]["params"] == {"temperature": 0.1}
    # params given on the command line are never dropped silently: they reach the constructor
    cfg = C.resolve(raw, {"objective.name": "DCLLoss", "objective.params": {"symmetric": True}})
    assert cfg["objectives"]["main"]["params"] == {"symmetric": True}
    # no rename, no drop
    assert C.resolve(raw)["objectives"]["main"]["params"]["symmetric"] is True
