"""The model registry: names to lazily imported adapters, presets and defaults.

Adapters live in ``models/`` and are imported only when a model is made, so a
user without TensorFlow can still run the torch and LightFM models. Adding a
model to rsbench is one adapter file plus one ``register`` line in
:func:`default_registry`. Models from elsewhere join without touching rsbench:

* a package declares them in the entry-point group ``rsbench.models`` (see
  :func:`load_plugins`);
* ``module:Class`` names any importable :class:`models.base.Recommender`
  subclass ad hoc (``--models my_pkg.my_module:MyModel``);
* :meth:`Registry.register_class` adds a class object (e.g. one defined in a
  notebook) from Python.

A bare model name means its *default preset* (``default_preset``, "fast" for
the shipped models that have presets), and :meth:`Registry.canonical` turns
``name`` into ``(name, default_preset)`` so that results are labelled
``name:preset`` whichever way the model was asked for.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "ModelUnavailableError",
    "PluginError",
    "Registry",
    "UnknownModelError",
    "canonical_label",
    "default_registry",
    "load_plugins",
]

log = logging.getLogger(__name__)

#: The entry-point group third-party packages declare their models in.
ENTRY_POINT_GROUP = "rsbench.models"

# "pkg.module:Class" (dotted module, dotted attribute): an ad-hoc model reference.
_OBJECT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known`` to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownModelError(ValueError):
    """A model or preset name is not registered; the message lists the known names."""


class ModelUnavailableError(ImportError):
    """The model's framework is not installed; the message names the pip extra."""


@dataclass(frozen=True)
class PluginError:
    """A plugin that could not be registered: its entry-point name, distribution and error."""

    name: str
    distribution: str
    error: str


#: Boolean class attributes of :class:`models.base.Recommender` (the driver reads some
#: before a run); an entry may declare them (``facts=``) so that reading them imports nothing.
MODEL_FACTS = (
    "deterministic",
    "reference",
    "uses_sampler",
    "uses_features",
    "iterative",
    "can_score_cold_users",
    "can_score_cold_items",
)


def _facts(*true: str) -> dict[str, bool]:
    """Every :data:`MODEL_FACTS` entry, ``True`` for the names given."""
    unknown = set(true) - set(MODEL_FACTS)
    if unknown:
        raise ValueError(f"unknown model fact(s) {sorted(unknown)}")
    return {name: name in true for name in MODEL_FACTS}


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
        :mod:`bench.execution.tune_space`.
    preset_spaces : dict of str to dict
        Per-preset replacements of entries of ``space`` (e.g. a learning-rate
        range that depends on the preset's optimizer).
    default_preset : str or None
        The preset a bare name means (``None``: the class defaults plus ``defaults``).
    source : str
        Where the model comes from: ``"rsbench"``, ``"plugin <distribution>"``,
        ``"ad hoc"`` (a ``module:Class`` name) or ``"python"`` (a class object).
    factory : type or None
        The class itself when it was registered as an object (not imported by name).
    facts : dict of str to bool
        The class's declared facts (:data:`MODEL_FACTS`: deterministic, uses the
        sampler, ...), readable without importing the model's framework; a fact
        not declared here is read from the class (:meth:`fact`).
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
    default_preset: str | None = None
    source: str = "rsbench"
    factory: type | None = field(default=None, compare=False)
    facts: dict[str, bool] = field(default_factory=dict)

    def fact(self, name: str) -> bool:
        """The class fact ``name`` (one of :data:`MODEL_FACTS`): declared, else from the class.

        Declared facts cost no import: the driver reads them before any run
        (e.g. a deterministic model runs once) without starting TensorFlow.
        """
        if name not in MODEL_FACTS:
            raise ValueError(f"unknown model fact {name!r}; one of {', '.join(MODEL_FACTS)}")
        if name in self.facts:
            return self.facts[name]
        return bool(getattr(self.load(), name, False))

    @property
    def importable(self) -> bool:
        """Whether a fresh (spawned) process can import the class by its name.

        False for classes defined in ``__main__`` (a script or a notebook cell)
        or inside a function: such models must run in the process that made them.
        """
        module, _, attr = self.entry_point.partition(":")
        return module not in ("__main__", "__mp_main__") and "<locals>" not in attr

    def missing(self) -> list[str]:
        """Required modules that cannot be found (empty when available)."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]

    @property
    def available(self) -> bool:
        """True when every required module is importable."""
        return not self.missing()

    def load(self) -> type:
        """Import and return the adapter class."""
        if self.factory is not None:
            return self.factory
        missing = self.missing()
        if missing:
            hint = f" (pip install 'rsbench[{self.extra}]')" if self.extra else ""
            raise ModelUnavailableError(
                f"model {self.name!r} needs {', '.join(missing)}, which is not installed{hint}"
            )
        return _import_object(self.entry_point, f"model {self.name!r}")


def _checked_facts(facts: dict[str, bool] | None, name: str) -> dict[str, bool]:
    facts = dict(facts or {})
    for key, value in facts.items():
        if key not in MODEL_FACTS or not isinstance(value, bool):
            raise ValueError(
                f"model {name!r}: facts must map {', '.join(MODEL_FACTS)} to True/False, "
                f"got {key!r}: {value!r}"
            )
    return facts


def _import_object(path: str, what: str) -> Any:
    """Import ``"module:attr.sub"``; ``ImportError`` naming ``what`` when it is not there."""
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(
                f"entry point {path!r} of {what}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def _import_ad_hoc(path: str) -> Any:
    """Import an ad-hoc ``module:Class``, also from the working folder.

    ``python -m`` puts the working folder on ``sys.path`` but the ``rsbench``
    console script does not; a module next to the user (``my_models.py``)
    should be found either way, as web servers find ``app:App``.
    """
    try:
        return _import_object(path, "ad-hoc model")
    except ModuleNotFoundError as exc:
        top = path.partition(":")[0].split(".")[0]
        cwd = os.getcwd()
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return _import_object(path, "ad-hoc model")


def _check_recommender_class(obj: Any, where: str) -> type:
    """``obj`` if it is a :class:`models.base.Recommender` subclass, else ``TypeError``."""
    from models.base import Recommender

    if not (isinstance(obj, type) and issubclass(obj, Recommender)):
        raise TypeError(
            f"{where} is {obj!r}, not a subclass of models.base.Recommender "
            "(see README, 'Add your own model')"
        )
    return obj


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
        #: Plugins that failed to load (reported by ``rsbench list``; the others still work).
        self.plugin_errors: list[PluginError] = []

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
        default_preset: str | None = None,
        source: str = "rsbench",
        facts: dict[str, bool] | None = None,
        **defaults: Any,
    ) -> ModelEntry:
        """Register ``name``; registering a name twice raises ``ValueError``.

        ``default_preset`` names the preset that a bare ``name`` means; it must
        be one of ``presets``.
        """
        if not isinstance(name, str) or not name or ":" in name or "," in name:
            raise ValueError(f"invalid model name {name!r} (no ':' or ',' allowed)")
        if name in self._entries:
            raise ValueError(f"model {name!r} is already registered")
        if entry_point.count(":") != 1:
            raise ValueError(f"entry point must look like 'module:Class', got {entry_point!r}")
        presets = {k: dict(v) for k, v in (presets or {}).items()}
        if default_preset is not None and default_preset not in presets:
            raise ValueError(
                f"default_preset {default_preset!r} of model {name!r} is not one of its "
                f"presets ({', '.join(sorted(presets)) or 'none'})"
            )
        entry = ModelEntry(
            name=name,
            entry_point=entry_point,
            defaults=dict(defaults),
            presets=presets,
            requires=tuple(requires),
            extra=extra,
            description=description,
            space={k: dict(v) for k, v in (space or {}).items()},
            preset_spaces={
                p: {k: dict(v) for k, v in d.items()} for p, d in (preset_spaces or {}).items()
            },
            default_preset=default_preset,
            source=source,
            facts=_checked_facts(facts, name),
        )
        unknown = sorted(set(entry.preset_spaces) - set(entry.presets))
        if unknown:
            raise ValueError(f"model {name!r}: preset_spaces for unknown preset(s) {unknown}")
        self._entries[name] = entry
        return entry

    def register_class(
        self,
        cls: type,
        name: str | None = None,
        *,
        presets: dict[str, dict[str, Any]] | None = None,
        default_preset: str | None = None,
        description: str = "",
        source: str = "python",
        **defaults: Any,
    ) -> ModelEntry:
        """Register a :class:`~models.base.Recommender` subclass given as an object.

        Parameters
        ----------
        cls : type
            The adapter class (may live in ``__main__``, e.g. a notebook cell).
        name : str, optional
            Registry name; default ``"module:Class"`` of ``cls``.
        presets, default_preset, description, **defaults
            As in :meth:`register`; ``presets`` and ``default_preset`` default
            to the class attributes of the same names, when it has them.

        Returns
        -------
        ModelEntry
        """
        cls = _check_recommender_class(cls, "the model")
        path = f"{cls.__module__}:{cls.__qualname__}"
        name = path if name is None else name
        if name in self._entries:
            raise ValueError(f"model {name!r} is already registered")
        if name != path and (not name or ":" in name or "," in name):
            raise ValueError(f"invalid model name {name!r} (no ':' or ',' allowed)")
        presets = dict(getattr(cls, "presets", None) or {}) if presets is None else presets
        if default_preset is None:
            default_preset = getattr(cls, "default_preset", None)
        presets = {k: dict(v) for k, v in presets.items()}
        if default_preset is not None and default_preset not in presets:
            raise ValueError(
                f"default_preset {default_preset!r} of model {name!r} is not one of its presets"
            )
        doc = (cls.__doc__ or "").strip().splitlines()
        entry = ModelEntry(
            name=name,
            entry_point=path,
            defaults=dict(defaults),
            presets=presets,
            description=description or (doc[0] if doc else ""),
            default_preset=default_preset,
            source=source,
            factory=cls,
        )
        self._entries[name] = entry
        return entry

    def _ad_hoc(self, path: str) -> ModelEntry:
        """Import ``"module:Class"`` and register it under that name (cached)."""
        if path in self._entries:
            return self._entries[path]
        try:
            obj = _import_ad_hoc(path)
        except ImportError as exc:
            module = path.partition(":")[0]
            hint = did_you_mean(module, list(self._entries))
            raise UnknownModelError(
                f"unknown model {path!r}: not a registered model{hint} and not an importable "
                f"module:Class ({exc}); known models: {', '.join(sorted(self._entries))}"
            ) from None
        try:
            cls = _check_recommender_class(obj, f"{path!r}")
        except TypeError as exc:
            raise UnknownModelError(str(exc)) from None
        return self.register_class(cls, path, source="ad hoc")

    def canonical(self, name: str, preset: str | None = None) -> tuple[str, str | None]:
        """``(model, preset)`` as results record them.

        A bare registered name gets its default preset; ``("pkg.mod", "Class")``
        (what ``"pkg.mod:Class"`` splits into on the command line) becomes the
        ad-hoc model ``("pkg.mod:Class", None)`` when ``pkg.mod`` is not a
        registered name. Unknown names are returned unchanged (``get`` reports them).
        """
        if name in self._entries:
            entry = self._entries[name]
            return name, entry.default_preset if preset is None else preset
        if preset is not None and _OBJECT_PATH.match(f"{name}:{preset}"):
            name, preset = f"{name}:{preset}", None
        if preset is None and isinstance(name, str) and _OBJECT_PATH.match(name):
            try:  # import it now: a class may declare a default preset
                return name, self.get(name).default_preset
            except (ValueError, ImportError):
                return name, None
        return name, preset

    def get(self, name: str) -> ModelEntry:
        """The entry for ``name``; an unknown name raises :class:`UnknownModelError`.

        ``"module:Class"`` names an ad-hoc model: it is imported and registered
        on first use.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        if isinstance(name, str) and _OBJECT_PATH.match(name):
            return self._ad_hoc(name)
        hint = did_you_mean(str(name), list(self._entries))
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; known models: {', '.join(sorted(self._entries))} "
            "(or give an importable 'module:Class')"
        )

    def params(self, name: str, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Parameters ``make`` would pass: defaults, then the preset, then overrides.

        ``preset=None`` means the model's default preset (if it has one).
        """
        entry = self.get(name)
        params = dict(entry.defaults)
        if preset is None:
            preset = entry.default_preset
        if preset is not None:
            if preset not in entry.presets:
                known = ", ".join(sorted(entry.presets)) or "none"
                hint = did_you_mean(preset, list(entry.presets))
                raise UnknownModelError(
                    f"model {name!r} has no preset {preset!r}{hint}; its presets: {known}"
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

    def only(self, name: str) -> Registry:
        """A registry holding just ``name``'s entry (what an isolated worker needs).

        Sending only that entry to a spawned process keeps classes it cannot
        import (defined in ``__main__``) out of the pickle.
        """
        entry = self.get(name)
        reg = Registry()
        reg._entries[entry.name] = entry
        return reg

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


def load_plugins(reg: Registry, *, group: str = ENTRY_POINT_GROUP) -> list[PluginError]:
    """Register the models other installed packages declare in the entry-point ``group``.

    A package declares, in its ``pyproject.toml``::

        [project.entry-points."rsbench.models"]
        my-model = "my_pkg.models:MyModel"

    The object an entry point names is either

    * a :class:`models.base.Recommender` subclass: registered as the entry
      point's name, with its class attributes ``presets`` (dict of name to
      parameters) and ``default_preset`` when it has them; or
    * any other callable: called with the registry, it registers one or more
      models itself (``reg.register(name, "my_pkg.models:MyModel", presets=...)``),
      which keeps a heavy framework import out of ``rsbench list``.

    A plugin that fails (import error, wrong type, a name already taken) is
    logged and recorded in ``reg.plugin_errors`` with its name and error; the
    other plugins and the shipped models are unaffected.

    Returns
    -------
    list of PluginError
        The failures of this call.
    """
    failures = []
    try:
        points = sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)
    except Exception as exc:  # broken metadata must not stop rsbench
        log.warning("could not read the %r entry points: %s", group, exc)
        return failures
    for point in points:
        dist = getattr(point, "dist", None)
        dist_name = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        source = f"plugin {dist_name}"
        try:
            obj = point.load()
            if isinstance(obj, type):
                reg.register_class(
                    _check_recommender_class(obj, point.value), point.name, source=source
                )
            elif callable(obj):
                before = set(reg._entries)
                obj(reg)
                for name in set(reg._entries) - before:
                    entry = reg._entries[name]
                    reg._entries[name] = _replace_source(entry, source)
            else:
                raise TypeError(f"{point.value!r} is neither a Recommender class nor a function")
        except Exception as exc:  # one broken plugin must not break the others
            error = PluginError(point.name, dist_name, f"{type(exc).__name__}: {exc}")
            log.warning(
                "plugin %r (%s) could not be loaded: %s", error.name, dist_name, error.error
            )
            failures.append(error)
    reg.plugin_errors.extend(failures)
    return failures


def _replace_source(entry: ModelEntry, source: str) -> ModelEntry:
    from dataclasses import replace

    return replace(entry, source=source)


def canonical_label(label: str, registry: Registry | None = None) -> str:
    """The ``name:preset`` label of ``label``: a bare name gets its default preset.

    Used to read result tables written before labels were canonical (a bare
    ``torch-bilinear`` ran the ``fast`` parameters and is ``torch-bilinear:fast``).
    Unknown names are returned unchanged.
    """
    reg = default_registry(plugins=False) if registry is None else registry
    name, _, preset = str(label).partition(":")
    if preset or name not in reg:
        return str(label)
    default = reg.get(name).default_preset
    return f"{name}:{default}" if default else name


def default_registry(*, plugins: bool = True) -> Registry:
    """A fresh registry with every model rsbench ships, plus installed plugins.

    Parameters
    ----------
    plugins : bool
        Also register the models of the ``rsbench.models`` entry points
        (:func:`load_plugins`).
    """
    reg = Registry()
    # Baselines: numpy only.
    reg.register(
        "random",
        "models.baselines:RandomModel",
        facts=_facts(),
        description="uniform random scores",
    )
    reg.register(
        "popularity",
        "models.baselines:Popularity",
        facts=_facts("deterministic", "reference", "can_score_cold_users", "can_score_cold_items"),
        description="items ranked by train positive count",
    )
    reg.register(
        "ease",
        "models.baselines:EASE",
        facts=_facts("deterministic"),
        description="EASE^R closed-form item-item model (Steck 2019)",
        # Steck 2019 tunes lambda on a log grid (hundreds on ML-20M); EASE admits any
        # lambda > 0, and below 1 the Gram inverse of a sparse catalogue is ill-conditioned.
        space={"l2": _log_float(1.0, 1e4)},
    )
    reg.register(
        "itemknn",
        "models.knn:ItemKNN",
        facts=_facts("deterministic"),
        description="item-item cosine neighbours with shrinkage, top-k (scipy.sparse)",
        # Dacrema et al. 2019 search k in [5, 1000] and shrink in [0, 1000] for ItemKNN;
        # a shrinkage ladder keeps 0 (plain cosine) reachable.
        space={
            "neighbours": _log_int(5, 1000),
            "shrinkage": _choices(0.0, 1.0, 10.0, 100.0, 1000.0),
        },
    )
    # The notebook's triplet models in Keras 3 (TensorFlow backend).
    keras = {"requires": ("tensorflow", "keras"), "extra": "keras"}
    reg.register(
        "keras-bilinear",
        "models.keras_triplet:KerasBilinear",
        facts=_facts("uses_sampler", "iterative"),
        default_preset="fast",
        presets={
            # The notebook, run by Keras's own Model.fit loop.
            "notebook": {**NOTEBOOK_BILINEAR, "trainer": "keras-fit"},
            # The same model trained for speed (= the class defaults, except the two
            # scale settings below, whose class defaults are the notebook's).
            "fast": {
                **NOTEBOOK_BILINEAR,
                # Regularised differently from the notebook: L2 on the rows each batch
                # looks up (per occurrence, as LightFM), not on the whole tables, and
                # Adam moving only those rows (moments of untouched rows do not decay).
                # Whole-table L2 makes every gradient dense, and Adam then updated both
                # full tables on every step: ~381 s per epoch at ML-20M size.
                "regularization": "batch-rows",
                "optimizer": "lazy-adam",
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
        facts=_facts("uses_sampler", "iterative"),
        default_preset="fast",
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
        facts=_facts("uses_sampler", "iterative"),
        default_preset="fast",
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
        facts=_facts("uses_sampler", "iterative"),
        default_preset="fast",
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
        facts=_facts("uses_features", "iterative", "can_score_cold_users", "can_score_cold_items"),
        default_preset="fast",
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
        facts=_facts("uses_features", "iterative", "can_score_cold_users", "can_score_cold_items"),
        default_preset="fast",
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
        facts=_facts("iterative"),
        default_preset="fast",
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
        facts=_facts("iterative"),
        default_preset="fast",
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
    fm_fast = {
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
    }
    fm_ids_only = {**fm_fast, "use_user_features": False, "use_item_features": False}
    reg.register(
        "fm",
        "models.fm:FactorizationMachine",
        facts=_facts(
            "uses_sampler",
            "uses_features",
            "iterative",
            "can_score_cold_users",
            "can_score_cold_items",
        ),
        default_preset="fast",
        presets={
            "fast": dict(fm_fast),
            "ids-only": dict(fm_ids_only),
            # ids-only with Adam on the batch's rows only: a step costs O(batch), not
            # O(table). `rsbench run --seeds 0`, same numbers otherwise: ML-1M AUC
            # 0.9007 / precision@10 0.0401 against 0.8932 / 0.0368 with dense Adam,
            # ML-100K 0.9308 / 0.1149 against 0.9307 / 0.1131. With side features
            # lazy-adam was lower on ML-100K (one seed), so "fast" keeps dense Adam.
            "ids-only-lazy": {**fm_ids_only, "optimizer": "lazy-adam"},
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
    if plugins:
        load_plugins(reg)
    return reg
