"""The ``implicit`` library's iALS and BPR (CPU) as rsbench adapters."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from bench.interactions import Interactions
from models.base import EpochCallback, Recommender, check_finite, check_positive, derive_seed

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.datasets.dataset import SideFeatures
    from bench.sampler import NegativeSampler

__all__ = ["ImplicitALS", "ImplicitBPR"]

log = logging.getLogger(__name__)


class _ImplicitModel(Recommender):
    """Shared training loop: one ``implicit`` iteration per epoch, factors kept between calls.

    ``implicit``'s ``fit`` initialises the factors only when they are still
    ``None``, so calling it with ``iterations=1`` once per epoch continues the
    same optimisation and gives learning curves. The estimator's
    ``random_state`` is a ``numpy.random.Generator`` seeded from the fit
    ``rng``; ``implicit`` keeps drawing from that same generator on every call
    (BPR draws fresh per-thread seeds each epoch).

    BLAS is limited to one thread (``threadpoolctl``) around ``implicit``'s
    own calls only, as ``implicit`` recommends: its solvers parallelise over
    users with OpenMP, and a multi-threaded BLAS underneath oversubscribes the
    cores. Nothing is changed globally; scoring uses the caller's BLAS setup.
    """

    uses_sampler: ClassVar[bool] = False
    iterative: ClassVar[bool] = True

    def _make_estimator(self, random_state: np.random.Generator) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _check_common(self) -> None:
        super().validate_params()
        check_positive("factors", self.factors, integer=True)
        check_positive("regularization", self.regularization, allow_zero=True)
        check_positive("num_threads", self.num_threads, integer=True)

    def make_sampler(self, train: Interactions) -> NegativeSampler | None:
        """``None``: these models do not train on the common sampler's triplets."""
        return None

    def fit(
        self,
        train: Interactions,
        *,
        sampler: NegativeSampler | None = None,
        epochs: int | None = None,
        rng: np.random.Generator,
        on_epoch: EpochCallback | None = None,
        features: tuple[SideFeatures | None, SideFeatures | None] | None = None,
    ):
        """Train for ``epochs`` iterations of ``implicit``'s solver, one per epoch.

        Parameters
        ----------
        train : Interactions
            Train positives; they are binarised (every positive has value 1).
        sampler : NegativeSampler, optional
            Ignored (see the class notes).
        epochs : int, optional
            Overrides ``self.epochs``.
        rng : numpy.random.Generator
            Seeds ``implicit``'s random state (initial factors, BPR sampling).
        on_epoch : callable, optional
            Called with the 1-based epoch after each iteration.
        features : ignored
            These models use no side features.

        Returns
        -------
        self
        """
        epochs = self._begin_fit(train, rng, epochs)
        if sampler is not None:
            log.debug("%s ignores the common sampler (%r)", type(self).__name__, sampler)
        user_items = train.to_bool_csr().astype(np.float32)
        user_items.sort_indices()
        self._num_users, self._num_items = train.shape
        with threadpool_limits(limits=1, user_api="blas"):
            self._estimator = self._make_estimator(np.random.default_rng(derive_seed(rng)))
        name = type(self).__name__
        for epoch in range(1, epochs + 1):
            with threadpool_limits(limits=1, user_api="blas"):
                self._estimator.fit(user_items, show_progress=False)
            user_factors = check_finite(
                self._estimator.user_factors, f"{name} user factors after epoch {epoch}"
            )
            item_factors = check_finite(
                self._estimator.item_factors, f"{name} item factors after epoch {epoch}"
            )
            self._user_factors = np.asarray(user_factors, dtype=np.float32)
            self._item_factors_t = np.ascontiguousarray(np.asarray(item_factors, np.float32).T)
            self._fitted = True
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """``user_factors[user_ids] @ item_factors.T`` for the whole catalogue.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray, float32, shape (n, num_items)
        """
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(self._user_factors[user_ids] @ self._item_factors_t)


class ImplicitALS(_ImplicitModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) from the ``implicit`` library.

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + regularization (|x|^2 + |y|^2)``
    over *all* user-item pairs, with ``p_ui = 1`` and ``c_ui = alpha`` for train
    positives and ``p_ui = 0``, ``c_ui = 1`` for every other pair (``implicit``'s
    convention: its ``alpha`` multiplies the binary matrix, so it plays the role
    of ``1 + alpha`` in the paper). Each epoch is one alternating sweep (users,
    then items), solved with ``implicit``'s conjugate-gradient solver unless
    ``use_cg=False`` (exact Cholesky).

    Parameters
    ----------
    factors : int
        Latent dimension.
    regularization : float
        L2 penalty ``lambda`` (>= 0), not scaled by counts.
    alpha : float
        Confidence of a positive (> 0).
    epochs : int
        ALS sweeps (``implicit``'s ``iterations``), one per epoch.
    use_cg : bool
        Conjugate gradient (fast, 3 steps per solve) instead of the exact solve.
    num_threads : int
        OpenMP threads of the solver. Each user's (item's) solve is independent,
        so results do not depend on the thread count.

    Notes
    -----
    Default hyperparameters were chosen by a small sweep on ML-100K with a
    validation split cut out of the ``ua`` train positives (not the test set);
    see the project notes.
    """

    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = (
        "implicit iALS: weighted least squares over all user-item pairs (no negative "
        "sampling; confidence alpha on positives, 1 elsewhere); the common sampler is not used."
    )

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 50.0,
        alpha: float = 8.0,
        epochs: int = 15,
        use_cg: bool = True,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.epochs = epochs
        self.use_cg = use_cg
        self.num_threads = num_threads

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._check_common()
        check_positive("alpha", self.alpha)
        if not isinstance(self.use_cg, (bool, np.bool_)):
            raise ValueError(f"use_cg must be a bool, got {self.use_cg!r}")

    def _make_estimator(self, random_state: np.random.Generator) -> AlternatingLeastSquares:
        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            dtype=np.float32,
            use_cg=bool(self.use_cg),
            iterations=1,
            num_threads=int(self.num_threads),
            random_state=random_state,
        )


class ImplicitBPR(_ImplicitModel):
    """Bayesian personalised ranking (Rendle et al. 2009) from the ``implicit`` library.

    SGD on ``-log sigmoid(x_u . (y_i - y_j) + b_i - b_j)`` plus L2 on the factors
    touched. ``implicit`` samples everything itself: each epoch makes
    ``len(train)`` draws of a random train positive ``(u, i)`` (with
    replacement) and a negative ``j`` taken from a random train interaction,
    so **negatives are popularity-proportional**, not uniform; with
    ``verify_negative_samples`` a draw whose ``j`` is a positive of ``u`` is
    skipped. The common sampler is not used. Items with no train positive keep
    all-zero factors (score 0 + bias 0).

    Parameters
    ----------
    factors : int
        Latent dimension (``implicit`` adds one more column for the item bias).
    learning_rate : float
        SGD step size.
    regularization : float
        L2 penalty (>= 0).
    epochs : int
        Passes of ``len(train)`` SGD draws, one per epoch.
    verify_negative_samples : bool
        Skip negatives that are the user's train positives.
    num_threads : int
        OpenMP threads. Above 1 the SGD is Hogwild (racy) and the same seed no
        longer reproduces the same factors: keep 1 for reproducible runs.
    """

    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = (
        "implicit BPR samples its own negatives (popularity-proportional: drawn from the list "
        "of train interactions); the common sampler is not used. num_threads > 1 is Hogwild "
        "and not reproducible."
    )

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        epochs: int = 100,
        verify_negative_samples: bool = True,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.verify_negative_samples = verify_negative_samples
        self.num_threads = num_threads

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._check_common()
        check_positive("learning_rate", self.learning_rate)
        if not isinstance(self.verify_negative_samples, (bool, np.bool_)):
            raise ValueError(
                f"verify_negative_samples must be a bool, got {self.verify_negative_samples!r}"
            )

    def _make_estimator(self, random_state: np.random.Generator) -> BayesianPersonalizedRanking:
        return BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            dtype=np.float32,
            iterations=1,
            num_threads=int(self.num_threads),
            verify_negative_samples=bool(self.verify_negative_samples),
            random_state=random_state,
        )
