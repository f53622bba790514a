"""The model registry: registration, presets, lazy imports, availability, errors."""

from __future__ import annotations

import sys

import pytest

from bench.registry import ModelUnavailableError, Registry, UnknownModelError, default_registry


def test_register_make_and_presets():
    reg = Registry()
    presets = {"strong": {"l2": 50.0}, "weak": {"l2": 1e4}}
    reg.register("ease", "models.baselines:EASE", presets=presets, l2=100.0)
    assert reg.make("ease").l2 == 100.0
    assert reg.make("ease", "strong").l2 == 50.0
    assert reg.make("ease", "strong", l2=7.0).l2 == 7.0
    assert reg.params("ease", "weak") == {"l2": 1e4}
    # The registry keeps its own copy: the caller's dicts cannot change a preset later.
    presets["weak"]["l2"] = 1.0
    presets["late"] = {"l2": 2.0}
    assert reg.params("ease", "weak") == {"l2": 1e4}
    with pytest.raises(UnknownModelError, match="no preset 'late'"):
        reg.params("ease", "late")
    assert "ease" in reg and len(reg) == 1


def test_unknown_names_list_the_known_ones():
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    with pytest.raises(UnknownModelError, match="known models: popularity, random"):
        reg.make("popularty")
    with pytest.raises(UnknownModelError, match="no preset 'fast'"):
        reg.make("popularity", "fast")


def test_registering_twice_or_badly_fails():
    reg = Registry()
    reg.register("random", "models.baselines:RandomModel")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("random", "models.baselines:RandomModel")
    with pytest.raises(ValueError, match="module:Class"):
        reg.register("x", "models.baselines.RandomModel")
    with pytest.raises(ValueError, match="invalid model name"):
        reg.register("a:b", "models.baselines:RandomModel")
    # A model's presets are fixed when it is registered: a second registration that
    # would redefine them is refused like any other.
    reg.register("seeded", "models.baselines:RandomModel", presets={"p": {}})
    with pytest.raises(ValueError, match="already registered"):
        reg.register("seeded", "models.baselines:RandomModel", presets={"p": {}, "q": {}})
    assert set(reg.get("seeded").presets) == {"p"}
    with pytest.raises(ValueError, match=r"default_preset 'q' .* not one of its presets"):
        reg.register("other", "models.baselines:RandomModel", presets={"p": {}}, default_preset="q")


def test_bad_parameters_raise_value_error():
    reg = Registry()
    reg.register("ease", "models.baselines:EASE")
    with pytest.raises(ValueError, match="bad parameters for model 'ease'"):
        reg.make("ease", lamda=3)


def test_entry_points_are_imported_lazily(monkeypatch):
    monkeypatch.delitem(sys.modules, "models.baselines", raising=False)
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.names()
    assert "models.baselines" not in sys.modules
    reg.make("popularity")
    assert "models.baselines" in sys.modules


def test_missing_framework_is_listed_as_unavailable_with_its_extra():
    reg = Registry()
    entry = reg.register(
        "ghost", "ghost_module:Model", requires=("no_such_framework_xyz",), extra="ghost"
    )
    assert not entry.available
    assert reg.names(available_only=True) == []
    assert reg.names() == ["ghost"]
    with pytest.raises(ModelUnavailableError, match=r"rsbench\[ghost\]"):
        reg.make("ghost")


def test_missing_attribute_is_reported():
    reg = Registry()
    reg.register("bad", "models.baselines:NoSuchClass")
    with pytest.raises(ImportError, match="no attribute 'NoSuchClass'"):
        reg.make("bad")


def test_default_registry_names_and_patterns():
    reg = default_registry()
    names = reg.names()
    for name in (
        "random",
        "popularity",
        "ease",
        "keras-bilinear",
        "keras-deep",
        "torch-bilinear",
        "torch-deep",
        "lightfm-warp",
        "lightfm-bpr",
        "implicit-als",
        "implicit-bpr",
        "fm",
    ):
        assert name in names
    assert reg.names("torch-*") == ["torch-bilinear", "torch-deep"]
    # Each call gives an independent registry.
    other = default_registry()
    other.register("extra", "models.baselines:RandomModel")
    assert "extra" not in reg
