"""The model registry: names to lazily imported adapters, presets and defaults.

Adapters live in ``models/`` and are imported only when a model is made, so a
user without TensorFlow can still run the torch and LightFM models. Adding a
model is one adapter file plus one ``register`` line in :func:`default_registry`.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelEntry", "Registry", "UnknownModelError", "default_registry"]


class UnknownModelError(ValueError):
    """A model or preset name is not registered; the message lists the known names."""


class ModelUnavailableError(ImportError):
    """The model's framework is not installed; the message names the pip extra."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"keras-bilinear"``.
    entry_point : str
        ``"module:Class"``, imported on demand.
    defaults : dict
        Parameters passed to the class on top of its own defaults.
    presets : dict of str to dict
        Named parameter sets applied over ``defaults``.
    requires : tuple of str
        Importable modules the adapter needs (availability check).
    extra : str or None
        The pip extra providing ``requires`` (``pip install 'rsbench[extra]'``).
    description : str
        One line for ``rsbench list``.
    space : dict of str to dict
        Hyperparameter search space for ``rsbench tune``: parameter name ->
        ``{"type": "float"|"int", "low", "high", "log"}`` or
        ``{"type": "categorical", "choices": [...]}``, optionally with
        ``"when": {param: value or [values]}`` (suggested only then). See
        :mod:`bench.tune_space`.
    preset_spaces : dict of str to dict
        Per-preset replacements of entries of ``space`` (e.g. a learning-rate
        range that depends on the preset's optimizer).
    """

    name: str
    entry_point: str
    defaults: dict[str, Any] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    extra: str | None = None
    description: str = ""
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset_spaces: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def missing(self) -> list[str]:
        """Required modules that cannot be found (empty when available)."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]

    @property
    def available(self) -> bool:
        """True when every required module is importable."""
        return not self.missing()

    def load(self) -> type:
        """Import and return the adapter class."""
        missing = self.missing()
        if missing:
            hint = f" (pip install 'rsbench[{self.extra}]')" if self.extra else ""
            raise ModelUnavailableError(
                f"model {self.name!r} needs {', '.join(missing)}, which is not installed{hint}"
            )
        module_name, _, attr = self.entry_point.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ImportError(
                f"entry point {self.entry_point!r} of model {self.name!r}: "
                f"module {module_name!r} has no attribute {attr!r}"
            ) from None


class Registry:
    """A collection of models by name (tests build their own).

    Examples
    --------
    >>> reg = Registry()
    >>> reg.register("popularity", "models.baselines:Popularity")
    >>> model = reg.make("popularity")
    """

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}

    def register(
        self,
        name: str,
        entry_point: str,
        *,
        presets: dict[str, dict[str, Any]] | None = None,
        requires: tuple[str, ...] = (),
        extra: str | None = None,
        description: str = "",
        space: dict[str, dict[str, Any]] | None = None,
        preset_spaces: dict[str, dict[str, dict[str, Any]]] | None = None,
        **defaults: Any,
    ) -> ModelEntry:
        """Register ``name``; registering a name twice raises ``ValueError``."""
        if not name or ":" in name or "," in name:
            raise ValueError(f"invalid model name {name!r} (no ':' or ',' allowed)")
        if name in self._entries:
            raise ValueError(f"model {name!r} is already registered")
        if entry_point.count(":") != 1:
            raise ValueError(f"entry point must look like 'module:Class', got {entry_point!r}")
        entry = ModelEntry(
            name=name,
            entry_point=entry_point,
            defaults=dict(defaults),
            presets={k: dict(v) for k, v in (presets or {}).items()},
            requires=tuple(requires),
            extra=extra,
            description=description,
            space={k: dict(v) for k, v in (space or {}).items()},
            preset_spaces={
                p: {k: dict(v) for k, v in d.items()} for p, d in (preset_spaces or {}).items()
            },
        )
        unknown = sorted(set(entry.preset_spaces) - set(entry.presets))
        if unknown:
            raise ValueError(f"model {name!r}: preset_spaces for unknown preset(s) {unknown}")
        self._entries[name] = entry
        return entry

    def add_preset(self, name: str, preset: str, **params: Any) -> None:
        """Add a named parameter set to an existing model."""
        entry = self.get(name)
        if preset in entry.presets:
            raise ValueError(f"model {name!r} already has a preset {preset!r}")
        entry.presets[preset] = dict(params)

    def get(self, name: str) -> ModelEntry:
        """The entry for ``name``; an unknown name raises :class:`UnknownModelError`."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; known models: {', '.join(sorted(self._entries))}"
            ) from None

    def params(self, name: str, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Parameters ``make`` would pass: defaults, then the preset, then overrides."""
        entry = self.get(name)
        params = dict(entry.defaults)
        if preset is not None:
            if preset not in entry.presets:
                known = ", ".join(sorted(entry.presets)) or "none"
                raise UnknownModelError(
                    f"model {name!r} has no preset {preset!r}; its presets: {known}"
                )
            params.update(entry.presets[preset])
        params.update(overrides)
        return params

    def space(self, name: str, preset: str | None = None) -> dict[str, dict[str, Any]]:
        """The search space of ``name`` (with ``preset``'s replacements), as declared."""
        entry = self.get(name)
        self.params(name, preset)  # an unknown preset fails here
        space = {k: dict(v) for k, v in entry.space.items()}
        if preset is not None:
            space.update({k: dict(v) for k, v in entry.preset_spaces.get(preset, {}).items()})
        return space

    def make(self, name: str, preset: str | None = None, **overrides: Any):
        """Instantiate model ``name`` with its defaults, ``preset`` and ``overrides``."""
        params = self.params(name, preset, **overrides)
        cls = self.get(name).load()
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"bad parameters for model {name!r}: {exc}") from None

    def names(self, pattern: str = "*", *, available_only: bool = False) -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        return sorted(
            name
            for name, entry in self._entries.items()
            if fnmatch.fnmatch(name, pattern) and (entry.available or not available_only)
        )

    def entries(self, pattern: str = "*") -> list[ModelEntry]:
        """Entries whose names match ``pattern``, sorted by name."""
        return [self._entries[name] for name in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


#: The notebook's bilinear model (PROTOCOL.md section 1): 64-d cosine, margin 1,
#: L2 1e-6, Adam with Keras defaults, batch 64, uniform negatives, 10 epochs.
#: Shared by the Keras and torch adapters so both run exactly the same configuration.
NOTEBOOK_BILINEAR: dict[str, Any] = {
    "latent_dim": 64,
    "similarity": "cosine",
    "margin": 1.0,
    "l2_reg": 1e-6,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 64,
    "epochs": 10,
    "negatives": "uniform",
    "num_threads": 1,
}

#: The notebook's deep solution: user 32-d, item 64-d, one hidden layer of 128,
#: dropout 0.1, no L2, Adam defaults, batch 64, uniform negatives, 20 epochs
#: (the notebook's 0.91 target needs them).
NOTEBOOK_DEEP: dict[str, Any] = {
    "user_dim": 32,
    "item_dim": 64,
    "n_hidden": 1,
    "hidden_size": 128,
    "dropout": 0.1,
    "margin": 1.0,
    "l2_reg": 0.0,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 64,
    "epochs": 20,
    "negatives": "uniform",
    "num_threads": 1,
}


# -- search spaces for `rsbench tune` (issue 14) ---------------------------------------
# One per model, beside its presets; every preset of a model lies inside its space
# (tests/test_tune_space.py) so the preset can be a study's first trial. Regularisers
# whose default is 0 cannot be log-uniform: they get a categorical ladder of magnitudes.
def _log_float(low: float, high: float) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "log": True}


def _log_int(low: int, high: int) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, "log": True}


def _choices(*values: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(values)}


def _triplet_space() -> dict[str, dict[str, Any]]:
    """What every common-sampler triplet model shares: loss, batches, epochs, negatives.

    Margins and L2 around the notebook's (margin 1 on cosine similarity in [-1, 1],
    L2 1e-6); batch sizes from the notebook's 64 to 2048; the negative strategy
    includes WARP-style ``hard`` (Weston et al. 2011), whose candidate count is
    tuned only when it is chosen, as the popularity exponent (word2vec's 0.75
    lies inside) only for ``popularity``.
    """
    from bench.sampler import STRATEGIES

    return {
        "margin": {"type": "float", "low": 0.05, "high": 2.0},
        "l2_reg": _choices(0.0, 1e-7, 1e-6, 1e-5, 1e-4),
        "batch_size": _choices(64, 128, 256, 512, 1024, 2048),
        "epochs": _log_int(4, 32),
        "negatives": _choices(*STRATEGIES),
        "hard_candidates": {**_log_int(2, 50), "when": {"negatives": "hard"}},
        "negatives_alpha": {
            "type": "float",
            "low": 0.0,
            "high": 1.0,
            "when": {"negatives": "popularity"},
        },
    }


def _bilinear_space() -> dict[str, dict[str, Any]]:
    """The notebook's bilinear model, Adam learning rates (Kingma & Ba's 1e-3 inside)."""
    return {
        **_triplet_space(),
        "latent_dim": _log_int(16, 256),
        "learning_rate": _log_float(1e-4, 0.1),
    }


def _deep_space() -> dict[str, dict[str, Any]]:
    """The notebook's deep model: embedding sizes, depth, width, dropout, Adam rate."""
    return {
        **_triplet_space(),
        "user_dim": _log_int(8, 128),
        "item_dim": _log_int(8, 128),
        "n_hidden": {"type": "int", "low": 1, "high": 3},
        "hidden_size": _choices(32, 64, 128, 256, 512),
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "learning_rate": _log_float(1e-4, 3e-2),
    }


#: LightFM (Kula 2015): components, Adagrad rate, L2 per sample on item/user features.
LIGHTFM_SPACE: dict[str, dict[str, Any]] = {
    "no_components": _log_int(16, 256),
    "learning_rate": _log_float(1e-3, 0.3),
    "item_alpha": _choices(0.0, 1e-8, 1e-7, 1e-6, 1e-5),
    "user_alpha": _choices(0.0, 1e-8, 1e-7, 1e-6, 1e-5),
    "epochs": _log_int(4, 64),
}


def default_registry() -> Registry:
    """A fresh registry with every model rsbench ships."""
    reg = Registry()
    # Baselines: numpy only.
    reg.register("random", "models.baselines:RandomModel", description="uniform random scores")
    reg.register(
        "popularity",
        "models.baselines:Popularity",
        description="items ranked by train positive count",
    )
    reg.register(
        "ease",
        "models.baselines:EASE",
        description="EASE^R closed-form item-item model (Steck 2019)",
        # Steck 2019 tunes lambda on a log grid (hundreds on ML-20M); EASE admits any
        # lambda > 0, and below 1 the Gram inverse of a sparse catalogue is ill-conditioned.
        space={"l2": _log_float(1.0, 1e4)},
    )
    # The notebook's triplet models in Keras 3 (TensorFlow backend).
    keras = {"requires": ("tensorflow", "keras"), "extra": "keras"}
    reg.register(
        "keras-bilinear",
        "models.keras_triplet:KerasBilinear",
        presets={
            # The notebook, run by Keras's own Model.fit loop.
            "notebook": {**NOTEBOOK_BILINEAR, "trainer": "keras-fit"},
            # The same model trained for speed (= the class defaults).
            "fast": {
                **NOTEBOOK_BILINEAR,
                "learning_rate": 1e-2,
                "batch_size": 1024,
                "epochs": 12,
                "trainer": "compiled",
                "jit_compile": False,
            },
        },
        description="notebook bilinear triplet model, margin loss",
        space=_bilinear_space(),
        **keras,
    )
    reg.register(
        "keras-deep",
        "models.keras_triplet:KerasDeep",
        presets={
            "notebook": {**NOTEBOOK_DEEP, "trainer": "keras-fit"},
            # The same model trained for speed (= the class defaults).
            "fast": {
                **NOTEBOOK_DEEP,
                # Dropout only acts in training: the scoring network is the same.
                # On ML-100K it bought no AUC in 10 epochs and cost a quarter
                # of every epoch (masks for 22 M units).
                "dropout": 0.0,
                "learning_rate": 4e-3,
                "batch_size": 256,
                "epochs": 10,
                "negatives": "hard",
                "hard_candidates": 10,
                "trainer": "compiled",
                "jit_compile": False,
            },
        },
        description="notebook deep MLP triplet model, margin loss",
        space=_deep_space(),
        **keras,
    )
    # The same models in PyTorch.
    torch = {"requires": ("torch",), "extra": "torch"}
    reg.register(
        "torch-bilinear",
        "models.torch_triplet:TorchBilinear",
        presets={
            "notebook": {**NOTEBOOK_BILINEAR, "device": "cpu"},
            # Closed-form gradients and plain SGD over large batches: the same model and loss.
            "fast": {
                **NOTEBOOK_BILINEAR,
                "optimizer": "sgd",
                "learning_rate": 50.0,
                "batch_size": 1024,
                "epochs": 8,
                "negatives": "uniform-unseen",
                "device": "cpu",
            },
        },
        description="bilinear triplet model in PyTorch",
        # The class defaults (= the fast preset) run plain SGD on closed-form cosine
        # gradients, which wants rates ~50; the notebook preset's Adam wants ~1e-3.
        space={**_bilinear_space(), "learning_rate": _log_float(1.0, 200.0)},
        preset_spaces={
            "fast": {"learning_rate": _log_float(1.0, 200.0)},
            "notebook": {"learning_rate": _log_float(1e-4, 0.1)},
        },
        **torch,
    )
    reg.register(
        "torch-deep",
        "models.torch_triplet:TorchDeep",
        presets={
            "notebook": {**NOTEBOOK_DEEP, "device": "cpu"},
            "fast": {
                **NOTEBOOK_DEEP,
                "learning_rate": 2e-3,
                "batch_size": 256,
                "negatives": "uniform-unseen",
                "device": "cpu",
            },
        },
        description="deep MLP triplet model in PyTorch",
        space=_deep_space(),
        **torch,
    )
    # Classic strong peers.
    lightfm = {"requires": ("lightfm",), "extra": "lightfm"}
    lightfm_fast = {
        "no_components": 64,
        "learning_schedule": "adagrad",
        "learning_rate": 0.05,
        "item_alpha": 0.0,
        "user_alpha": 0.0,
        "max_sampled": 10,
        "num_threads": 1,
        "epochs": 10,
        "use_features": False,
        "normalize_features": False,
    }
    reg.register(
        "lightfm-warp",
        "models.lightfm_model:LightFMModel",
        loss="warp",
        presets={
            "fast": {"loss": "warp", **lightfm_fast},
            "features": {"loss": "warp", **lightfm_fast, "use_features": True},
        },
        description="LightFM with WARP loss (own negative sampling)",
        space={**LIGHTFM_SPACE, "max_sampled": _log_int(5, 100)},
        **lightfm,
    )
    reg.register(
        "lightfm-bpr",
        "models.lightfm_model:LightFMModel",
        loss="bpr",
        presets={
            "fast": {"loss": "bpr", **lightfm_fast},
            "features": {"loss": "bpr", **lightfm_fast, "use_features": True},
        },
        description="LightFM with BPR loss (own negative sampling)",
        space=dict(LIGHTFM_SPACE),
        **lightfm,
    )
    implicit = {"requires": ("implicit",), "extra": "implicit"}
    reg.register(
        "implicit-als",
        "models.implicit_model:ImplicitALS",
        presets={
            # Chosen by a sweep on a validation split cut from the ua train positives.
            "fast": {
                "factors": 64,
                "regularization": 50.0,
                "alpha": 8.0,
                "epochs": 15,
                "use_cg": True,
                "num_threads": 1,
            },
        },
        description="implicit's alternating least squares (iALS)",
        # Hu, Koren & Volinsky 2008 (confidence alpha, 40 in their data); Rendle et al.
        # 2022 stress wide log ranges of the regularisation and the dimension.
        space={
            "factors": _log_int(16, 256),
            "regularization": _log_float(1e-2, 1e3),
            "alpha": _log_float(0.1, 100.0),
            "epochs": _log_int(4, 32),
        },
        **implicit,
    )
    reg.register(
        "implicit-bpr",
        "models.implicit_model:ImplicitBPR",
        presets={
            "fast": {
                "factors": 64,
                "learning_rate": 0.01,
                "regularization": 0.01,
                "epochs": 100,
                "verify_negative_samples": True,
                "num_threads": 1,
            },
            # Best validation AUC of the sweep (lower precision@10 than "fast").
            "auc": {
                "factors": 64,
                "learning_rate": 0.05,
                "regularization": 0.05,
                "epochs": 300,
                "verify_negative_samples": True,
                "num_threads": 1,
            },
        },
        description="implicit's Bayesian personalised ranking",
        # Rendle et al. 2009: SGD rate and L2 on log scales; epochs up to the auc preset's 300.
        space={
            "factors": _log_int(16, 256),
            "learning_rate": _log_float(1e-3, 0.3),
            "regularization": _log_float(1e-4, 0.3),
            "epochs": _log_int(20, 400),
        },
        **implicit,
    )
    reg.register(
        "fm",
        "models.fm:FactorizationMachine",
        presets={
            "fast": {
                "latent_dim": 64,
                "loss": "bpr",
                "margin": 1.0,
                "l2_reg": 0.01,
                "learning_rate": 0.005,
                "batch_size": 256,
                "optimizer": "adam",
                "epochs": 10,
                "negatives": "uniform",
                "use_user_features": True,
                "use_item_features": True,
                "init_std": 0.01,
                "num_threads": 1,
            },
            "ids-only": {
                "latent_dim": 64,
                "loss": "bpr",
                "margin": 1.0,
                "l2_reg": 0.01,
                "learning_rate": 0.005,
                "batch_size": 256,
                "optimizer": "adam",
                "epochs": 10,
                "negatives": "uniform",
                "use_user_features": False,
                "use_item_features": False,
                "init_std": 0.01,
                "num_threads": 1,
            },
        },
        description="factorization machine with side features (PyTorch)",
        # Rendle 2010/2012: factor size, L2 and SGD-family rate on log scales.
        space={
            "latent_dim": _log_int(16, 256),
            "l2_reg": _log_float(1e-5, 0.1),
            "learning_rate": _log_float(1e-4, 5e-2),
            "init_std": _log_float(1e-3, 0.1),
            "batch_size": _choices(64, 128, 256, 512, 1024, 2048),
            "epochs": _log_int(4, 32),
            "negatives": _triplet_space()["negatives"],
            "hard_candidates": _triplet_space()["hard_candidates"],
            "negatives_alpha": _triplet_space()["negatives_alpha"],
        },
        **torch,
    )
    return reg
