"""Search spaces: parsing, membership, grids, and the registry's declarations."""

from __future__ import annotations

import math

import pytest

from bench.execution.tune_space import Param, SearchSpace
from bench.registry import Registry, default_registry

REGISTRY = default_registry()
ENTRIES = REGISTRY.entries()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "real", "low": 1, "high": 2}, "type must be one of"),
        ({"type": "float", "low": 2.0, "high": 1.0}, "low must be below high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "int", "low": 1.5, "high": 4}, "low must be an integer"),
        ({"type": "float", "low": 1.0}, "needs 'low' and 'high'"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical", "choices": [1, 1]}, "repeat a value"),
        ({"type": "categorical", "choices": [1], "low": 0}, "takes 'choices'"),
        ({"type": "float", "low": 0, "high": 1, "lgo": True}, "unknown key"),
        ({"type": "int", "low": 1, "high": 9, "log": True, "step": 2}, "cannot be combined"),
        ({"type": "float", "low": 0, "high": 1, "log": "yes"}, "log must be true or false"),
    ],
)
def test_bad_entries_raise_naming_the_parameter(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        SearchSpace({"lr": spec}, "model 'x'")
    assert "model 'x'" in str(info.value) and "'lr'" in str(info.value)


def test_contains_by_type_bounds_and_step():
    f = Param.parse("x", {"type": "float", "low": 1.0, "high": 10.0, "log": True}, "t")
    assert f.contains(1.0) and f.contains(10) and f.contains(3.3)
    assert (
        not f.contains(0.99)
        and not f.contains(10.01)
        and not f.contains("3")
        and not f.contains(True)
    )
    i = Param.parse("k", {"type": "int", "low": 2, "high": 10, "step": 4}, "t")
    assert [v for v in range(0, 12) if i.contains(v)] == [2, 6, 10]
    assert not i.contains(6.5)
    c = Param.parse("n", {"type": "categorical", "choices": ["a", 0.0, 1e-6]}, "t")
    assert c.contains("a") and c.contains(0.0) and c.contains(0) and c.contains(1e-6)
    assert not c.contains("b") and not c.contains(1e-5)


def test_when_orders_and_gates_parameters():
    space = SearchSpace(
        {
            "k": {"type": "int", "low": 2, "high": 3, "when": {"neg": "hard"}},
            "neg": {"type": "categorical", "choices": ["uniform", "hard"]},
            "lr": {"type": "categorical", "choices": [0.1, 0.2]},
        }
    )
    assert space.names() == ["lr", "neg", "k"]  # conditional last
    grid = list(space.grid({}))
    # uniform: 2 lr values; hard: 2 lr x 2 k values -> 6 configurations, k only with hard.
    assert len(grid) == 6 and space.size({}) == 6
    assert all(("k" in g) == (g["neg"] == "hard") for g in grid)
    assert space.active_values({"lr": 0.1, "neg": "uniform", "k": 10, "other": 1}) == {
        "lr": 0.1,
        "neg": "uniform",
    }
    # A condition on a parameter that is not tuned reads the fixed value.
    fixed = SearchSpace({"m": {"type": "int", "low": 1, "high": 2, "when": {"loss": "warp"}}})
    assert list(fixed.grid({"loss": "bpr"})) == [{}]
    assert list(fixed.grid({"loss": "warp"})) == [{"m": 1}, {"m": 2}]


def test_sizes_of_empty_finite_and_continuous_spaces():
    assert SearchSpace({}).size({}) == 1 and list(SearchSpace({}).grid({})) == [{}]
    assert math.isinf(SearchSpace({"x": {"type": "float", "low": 0, "high": 1}}).size({}))
    big = SearchSpace(
        {"a": {"type": "int", "low": 0, "high": 200}, "b": {"type": "int", "low": 0, "high": 200}}
    )
    assert math.isinf(big.size({}))  # above MAX_GRID: sampled, not enumerated


def test_declared_form_round_trips():
    declared = {
        "x": {"type": "float", "low": 1.0, "high": 5.0, "log": True},
        "k": {"type": "int", "low": 1, "high": 9, "step": 2, "when": {"x": [1.0, 2.0]}},
        "c": {"type": "categorical", "choices": [1, "a"]},
    }
    space = SearchSpace(declared)
    assert SearchSpace(space.to_dict()).to_dict() == space.to_dict()
    assert space.to_dict()["k"] == declared["k"]


def test_check_values_rejects_a_preset_outside_the_space():
    space = SearchSpace({"l2": {"type": "float", "low": 1.0, "high": 10.0}}, "model 'ease'")
    space.check_values({"l2": 5.0}, "its default")
    with pytest.raises(ValueError, match=r"l2=500.0, outside its search space"):
        space.check_values({"l2": 500.0}, "its default")


def test_registry_space_merges_preset_replacements_and_checks_names():
    reg = Registry()
    reg.register(
        "m",
        "models.baselines:EASE",
        presets={"p": {"l2": 50.0}},
        space={"l2": {"type": "float", "low": 1.0, "high": 100.0}},
        preset_spaces={"p": {"l2": {"type": "float", "low": 10.0, "high": 90.0}}},
    )
    assert reg.space("m")["l2"]["low"] == 1.0
    assert reg.space("m", "p")["l2"]["low"] == 10.0
    with pytest.raises(ValueError, match="no preset"):
        reg.space("m", "nope")
    with pytest.raises(ValueError, match="unknown preset"):
        reg.register("n", "models.baselines:EASE", preset_spaces={"q": {}})


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_declared_space_parses_and_names_real_parameters(entry):
    for preset in [None, *entry.presets]:
        space = SearchSpace(REGISTRY.space(entry.name, preset), entry.name)
        if not entry.available:
            continue
        cls = entry.load()
        assert set(space.names()) <= set(cls._param_names()), entry.name


def _presets(entry):
    return [None, *entry.presets]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_preset_is_inside_its_space_and_every_bound_is_admissible(entry):
    """A preset can be a study's first trial, and no bound is refused by the model itself."""
    if not entry.available:
        pytest.skip(f"{entry.name}: framework not installed")
    for preset in _presets(entry):
        model = REGISTRY.make(entry.name, preset)
        params = model.get_params()
        space = SearchSpace(REGISTRY.space(entry.name, preset), entry.name)
        space.check_values(params, f"preset {preset}")
        for p in space.params:
            points = p.points() if p.type == "categorical" else [p.low, p.high]
            for value in points:
                probe = model.clone().set_params(**{p.name: value})
                probe.validate_params()  # raises for an inadmissible bound


def test_ease_l2_is_bounded_below_by_an_admissible_value():
    from models.baselines import EASE

    low = REGISTRY.space("ease")["l2"]["low"]
    assert low > 0
    EASE(l2=low).validate_params()
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASE(l2=0.0).validate_params()


def test_triplet_models_tune_the_negative_strategy_including_hard():
    from bench.sampler import STRATEGIES

    for entry in ENTRIES:
        if entry.name.startswith(("keras-", "torch-")):
            space = REGISTRY.space(entry.name)
            assert space["negatives"]["choices"] == list(STRATEGIES)
            assert "hard" in space["negatives"]["choices"]
            assert space["hard_candidates"]["when"] == {"negatives": "hard"}
