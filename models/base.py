"""The adapter protocol every rsbench model follows, and helpers adapters share."""

from __future__ import annotations

import contextlib
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.datasets.dataset import SideFeatures
    from bench.interactions import Interactions
    from bench.sampler import NegativeSampler

__all__ = [
    "SIMILARITIES",
    "EpochCallback",
    "NotFittedError",
    "Recommender",
    "TripletRecommender",
    "check_finite",
    "check_positive",
    "derive_seed",
]

EpochCallback = Callable[[int], None]

_log = logging.getLogger(__name__)

#: Similarities of the notebook's bilinear model (cosine is the notebook's choice).
SIMILARITIES: tuple[str, ...] = ("cosine", "dot")


class NotFittedError(RuntimeError):
    """``score`` was called before ``fit``."""


def derive_seed(rng: np.random.Generator) -> int:
    """Draw a 31-bit integer seed for a framework (torch, TensorFlow, LightFM) from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))


def check_finite(array: np.ndarray, what: str) -> np.ndarray:
    """Raise ``FloatingPointError`` naming ``what`` if ``array`` holds NaN or inf."""
    array = np.asarray(array)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise FloatingPointError(f"{what} contains {bad} non-finite value(s) (NaN or inf)")
    return array


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False):
    """Raise ``ValueError`` unless ``value`` is a finite positive number (or >= 0)."""
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not np.isfinite(value):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


#: ``fit_scaling`` of a model whose optimizer updates whole weight tables on every step.
DENSE_UPDATE_SCALING = (
    "by the chosen update: {what} reads and writes every row of the weight tables on "
    "every step, so an epoch costs steps x table rows, which grows with positives x "
    "(users + items); {instead}"
)


#: ``fit_scaling`` of a model whose update touches a few rows of large tables in random
#: order: the algorithm is linear, its memory accesses are not free once the tables
#: outgrow the caches.
CACHE_BOUND_SCALING = (
    "by memory, not by its algorithm: {what} reads and writes, in random order, the rows "
    "of {state} that each {unit} touches, so once those tables outgrow the CPU caches "
    "(at ML-20M shape with 64 factors, {size}) each update waits on main memory and the "
    "cost per {unit} grows with users + items; {evidence} measures it at a fixed number "
    "of {unit}s"
)


class Recommender(ABC):
    """Base class of every model adapter.

    The contract (checked by ``tests/test_model_contract.py`` for every
    registered model):

    * ``__init__`` takes keyword-only hyperparameters and stores each one
      unchanged under the same attribute name; it does no work and no seeding.
    * ``fit(train, *, sampler, epochs, rng, on_epoch=None, features=None)``
      trains on ``train`` and returns ``self``. ``epochs=None`` means the
      model's own ``epochs`` hyperparameter. ``on_epoch(epoch)`` (1-based) is
      called after each epoch, outside any timed inner loop, so the runner can
      evaluate and time every epoch. All randomness (framework seeds included)
      comes from ``rng``.
    * ``score(user_ids)`` returns a C-contiguous float32 array of shape
      ``(len(user_ids), num_items)``; higher means more relevant. Calling it
      before ``fit`` raises :class:`NotFittedError`.
    * ``get_params()`` returns the hyperparameters as a dict that
      ``type(model)(**params)`` accepts.
    * ``warm_up()`` (optional; default: nothing) does the one-time,
      per-process work that a fit would otherwise pay, such as loading or
      compiling numba kernels. The runner calls it before any clock starts,
      as the time to import a model's framework is left out of its fit time.

    Class attributes
    ----------------
    uses_sampler : bool
        True for models trained on the common sampler's triplets.
    deterministic : bool
        True when ``fit`` uses no randomness at all (closed form or counting):
        every seed gives the same scores, so the runner runs such a model
        once and the contract suite checks that two seeds agree exactly.
    reference : bool
        True for the baseline that the report compares every other model
        with (paired tests "against the reference"): the shipped
        :class:`~models.baselines.Popularity`. The runner records it in each
        ``runs.csv`` row, so the tables pick the reference by this fact, not
        by a model's name.
    uses_features : bool
        True when the model can use side features passed to ``fit``.
    iterative : bool
        True when ``fit`` runs several epochs (learning curves are recorded).
    notes : str
        Anything a reader of the result table must know (e.g. "samples its
        own negatives").
    fit_scaling : str
        Empty when the fit cost grows linearly with the data (train
        positives); otherwise the algorithm's reason why it grows faster
        (e.g. EASE's cubic cost in the catalogue). The report's scale
        tables flag a fit-time exponent above 1.1 without a reason as a defect.
    can_score_cold_users, can_score_cold_items : bool
        True when the model gives a meaningful score to a user (item) without
        any train interaction, e.g. from side features (FM, LightFM with
        features) or because its ranking ignores the user (popularity). On
        cold-start splits the others are reported "not applicable"; see
        :meth:`scores_cold`.
    """

    can_score_cold_users: ClassVar[bool] = False
    can_score_cold_items: ClassVar[bool] = False
    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    reference: ClassVar[bool] = False
    uses_features: ClassVar[bool] = False
    iterative: ClassVar[bool] = False
    notes: ClassVar[str] = ""
    fit_scaling: ClassVar[str] = ""  # an instance may decide it from its parameters

    # -- parameters -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        names = []
        for name, param in sig.parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if param.kind is not param.KEYWORD_ONLY:
                raise TypeError(f"{cls.__name__}.__init__ parameter {name!r} must be keyword-only")
            names.append(name)
        return names

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as a dict (``type(self)(**self.get_params())`` clones the model)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Recommender:
        """Set hyperparameters by name; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; valid: {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def clone(self) -> Recommender:
        """An unfitted copy with the same hyperparameters."""
        return type(self)(**self.get_params())

    def validate_params(self) -> None:
        """Raise ``ValueError`` for impossible hyperparameters (called at the start of ``fit``).

        Subclasses extend this; the base checks ``epochs`` when the model has it.
        """
        if "epochs" in self._param_names():
            check_positive("epochs", self.epochs, integer=True)

    # -- training and scoring --------------------------------------------
    def _begin_fit(self, train: Interactions, rng: np.random.Generator, epochs: int | None) -> int:
        """Check ``train`` and ``rng``, validate hyperparameters; return the epochs to run."""
        from bench.interactions import Interactions

        if not isinstance(train, Interactions):
            raise TypeError(f"train must be Interactions, got {type(train).__name__}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.validate_params()
        return self._resolve_epochs(epochs)

    def _resolve_epochs(self, epochs: int | None) -> int:
        if epochs is None:
            epochs = getattr(self, "epochs", 1)
        return int(check_positive("epochs", epochs, integer=True))

    def warm_up(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """One-time per-process set-up, outside the timed fit.

        The default does nothing. A model with compiled (numba) kernels loads
        them here, so that ``fit_seconds`` measures training, not the first
        call's load or compile (about a second the first time in a checkout).
        It must not change what ``fit`` computes.
        """

    def scores_cold(self) -> tuple[bool, bool]:
        """Whether this configured model scores cold users and cold items.

        The class attributes, narrowed by the parameters where a model uses
        side features only when asked to (FM, LightFM).
        """
        return type(self).can_score_cold_users, type(self).can_score_cold_items

    @abstractmethod
    def fit(
        self,
        train: Interactions,
        *,
        sampler: NegativeSampler | None = None,
        epochs: int | None = None,
        rng: np.random.Generator,
        on_epoch: EpochCallback | None = None,
        features: tuple[SideFeatures | None, SideFeatures | None] | None = None,
    ) -> Recommender:
        """Train on ``train`` and return ``self`` (see the class docstring)."""

    @abstractmethod
    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores of every catalogue item for each user, float32 ``(len(user_ids), num_items)``."""

    def make_sampler(self, train: Interactions) -> NegativeSampler | None:
        """The negative sampler this model trains with (``None`` if it samples its own)."""
        return None

    # -- helpers for subclasses -------------------------------------------
    def _check_fitted(self) -> None:
        if not getattr(self, "_fitted", False):
            raise NotFittedError(f"{type(self).__name__} must be fitted before score()")

    def _check_user_ids(self, user_ids: np.ndarray) -> np.ndarray:
        self._check_fitted()
        user_ids = np.asarray(user_ids)
        if user_ids.ndim != 1 or (user_ids.size and not np.issubdtype(user_ids.dtype, np.integer)):
            raise ValueError(
                f"user_ids must be a 1-D integer array, got shape {user_ids.shape}, "
                f"dtype {user_ids.dtype}"
            )
        num_users = self._num_users
        if user_ids.size and (user_ids.min() < 0 or user_ids.max() >= num_users):
            raise ValueError(
                f"user_ids must be in 0..{num_users - 1}, got range "
                f"{user_ids.min()}..{user_ids.max()}"
            )
        return user_ids.astype(np.int64, copy=False)

    def _finish_scores(self, scores: Any) -> np.ndarray:
        scores = np.ascontiguousarray(np.asarray(scores, dtype=np.float32))
        return check_finite(scores, f"{type(self).__name__} scores")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class TripletRecommender(Recommender):
    """Base of models trained on (user, positive, negative) triplets from the common sampler.

    The training loop lives here, once: :meth:`fit` checks its inputs, builds
    the sampler (:meth:`make_sampler`) unless one is given, checks that it
    draws from the train catalogue, draws one framework seed from ``rng``,
    then per epoch samples fresh triplets (``score_pairs`` feeds the ``hard``
    strategy), trains on them, checks the weights are finite, records the
    epoch's loss in :attr:`loss_history_` and calls ``on_epoch``.

    A new triplet model implements only its step and its scoring:

    * :meth:`_start_training` ``(train, seed, features)``: build weights and
      optimizer, seeding the framework from ``seed``;
    * :meth:`_train_epoch` ``(triplets) -> float``: one pass over the epoch's
      triplets, returning its mean loss;
    * :meth:`_score_pairs` ``(user_ids, item_ids)``: current similarity of
      (user, item) pairs (used by the ``hard`` sampler);
    * :meth:`score`;

    and optionally :meth:`_epoch_context` (e.g. thread settings around each
    epoch) and :meth:`_check_weights` (raise ``FloatingPointError`` for
    non-finite weights).

    Subclasses must have hyperparameters ``negatives`` (sampler strategy) and
    may have ``negatives_alpha`` (popularity exponent) and ``hard_candidates``
    (number of candidates for the ``hard`` strategy); :meth:`make_sampler`
    builds the shared :class:`bench.sampler.NegativeSampler` from them.

    Attributes
    ----------
    loss_history_ : list of float
        Mean training loss of each epoch of the last fit (after ``fit``).
    """

    uses_sampler: ClassVar[bool] = True
    iterative: ClassVar[bool] = True

    # -- the hooks a triplet model implements ---------------------------------
    def _start_training(
        self,
        train: Interactions,
        seed: int,
        features: tuple[SideFeatures | None, SideFeatures | None] | None,
    ) -> None:
        """Build the weights and optimizer for ``train``; ``seed`` seeds the framework."""
        raise NotImplementedError

    def _train_epoch(self, triplets: Any) -> float:
        """Train on one epoch of :class:`~bench.sampler.Triplets`; return the mean loss."""
        raise NotImplementedError

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Current similarity of each (user, item) pair (the ``hard`` sampler's callback)."""
        raise NotImplementedError

    def _epoch_context(self) -> AbstractContextManager[Any]:
        """Context around sampling, training and checking of one epoch (default: none)."""
        return contextlib.nullcontext()

    def _check_weights(self, epoch: int) -> None:
        """Raise ``FloatingPointError`` for a non-finite weight after ``epoch`` (default: no-op)."""

    def _end_training(self) -> None:
        """Release what only training needed (called once after the last epoch; default: no-op)."""

    # -- the loop ---------------------------------------------------------------
    def fit(
        self,
        train: Interactions,
        *,
        sampler: NegativeSampler | None = None,
        epochs: int | None = None,
        rng: np.random.Generator,
        on_epoch: EpochCallback | None = None,
        features: tuple[SideFeatures | None, SideFeatures | None] | None = None,
    ) -> TripletRecommender:
        """Train on ``train`` for ``epochs`` epochs of triplets and return ``self``.

        Parameters
        ----------
        train : Interactions
            Positive training interactions.
        sampler : NegativeSampler, optional
            Source of each epoch's triplets; default :meth:`make_sampler`. It
            must draw from ``train.num_items`` items.
        epochs : int, optional
            Default: the ``epochs`` hyperparameter.
        rng : numpy.random.Generator
            The only source of randomness: one seed drawn from it seeds the
            framework (initial weights, dropout), then the sampler draws every
            epoch's triplets from it.
        on_epoch : callable, optional
            Called with the 1-based epoch number after every epoch, outside
            :meth:`_epoch_context`; ``score`` works inside it.
        features : (SideFeatures or None, SideFeatures or None), optional
            Side features, for models with ``uses_features``.

        Returns
        -------
        self
        """
        epochs = self._begin_fit(train, rng, epochs)
        if sampler is None:
            sampler = self.make_sampler(train)
        sampler_items = getattr(sampler, "num_items", train.num_items)
        if sampler_items != train.num_items:
            raise ValueError(
                f"sampler draws from {sampler_items} items but train has {train.num_items}"
            )
        self._fitted = False
        self._num_users, self._num_items = train.shape
        self._start_training(train, derive_seed(rng), features)
        self.loss_history_: list[float] = []
        name = type(self).__name__
        for epoch in range(1, epochs + 1):
            with self._epoch_context():
                triplets = sampler.sample(rng, score_pairs=self._score_pairs)
                loss = self._train_epoch(triplets)
                try:
                    self._check_weights(epoch)
                except FloatingPointError:
                    self._fitted = False
                    raise
            self.loss_history_.append(float(loss))
            self._fitted = True
            _log.debug("%s epoch %d/%d: mean batch loss %.5f", name, epoch, epochs, loss)
            if on_epoch is not None:
                on_epoch(epoch)
        self._end_training()
        return self

    def _validate_triplet_params(self, optimizers: tuple[str, ...]) -> None:
        """Check the hyperparameters every triplet model shares (see the class docstring)."""
        from bench.sampler import STRATEGIES

        Recommender.validate_params(self)
        check_positive("margin", self.margin, allow_zero=True)
        check_positive("l2_reg", self.l2_reg, allow_zero=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("batch_size", self.batch_size, integer=True)
        if self.optimizer not in optimizers:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; known: {', '.join(optimizers)}"
            )
        if self.negatives not in STRATEGIES:
            raise ValueError(
                f"unknown negatives strategy {self.negatives!r}; known: {', '.join(STRATEGIES)}"
            )
        check_positive("negatives_alpha", self.negatives_alpha, allow_zero=True)
        check_positive("hard_candidates", self.hard_candidates, integer=True)
        if self.num_threads is not None:
            check_positive("num_threads", self.num_threads, integer=True)

    def _validate_bilinear_params(self) -> None:
        """``latent_dim`` and ``similarity`` of the notebook's bilinear model."""
        check_positive("latent_dim", self.latent_dim, integer=True)
        if self.similarity not in SIMILARITIES:
            raise ValueError(
                f"unknown similarity {self.similarity!r}; known: {', '.join(SIMILARITIES)}"
            )

    def _validate_mlp_params(self) -> None:
        """Embedding sizes, depth, width and dropout of the notebook's deep model."""
        check_positive("user_dim", self.user_dim, integer=True)
        check_positive("item_dim", self.item_dim, integer=True)
        check_positive("n_hidden", self.n_hidden, integer=True, allow_zero=True)
        check_positive("hidden_size", self.hidden_size, integer=True)
        check_positive("dropout", self.dropout, allow_zero=True)
        if not self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def make_sampler(self, train: Interactions) -> NegativeSampler:
        """A :class:`~bench.sampler.NegativeSampler` over ``train`` with this model's strategy."""
        from bench.sampler import NegativeSampler

        return NegativeSampler(
            train,
            strategy=self.negatives,
            alpha=getattr(self, "negatives_alpha", 0.75),
            candidates=getattr(self, "hard_candidates", 10),
            margin=getattr(self, "margin", 1.0),
        )
