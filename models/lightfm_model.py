"""LightFM (WARP, BPR or k-OS WARP) as an rsbench adapter, optionally with side features."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM

from bench.interactions import Interactions
from models.base import (
    CACHE_BOUND_SCALING,
    EpochCallback,
    Recommender,
    check_finite,
    check_positive,
    derive_seed,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.datasets.dataset import SideFeatures
    from bench.sampler import NegativeSampler

__all__ = ["LOSSES", "LightFMModel"]

log = logging.getLogger(__name__)

#: The LightFM losses that make sense on positive-only implicit feedback.
#: (``logistic`` needs explicit negatives, so it is not offered.)
LOSSES: tuple[str, ...] = ("warp", "bpr", "warp-kos")
_SCHEDULES: tuple[str, ...] = ("adagrad", "adadelta")


class LightFMModel(Recommender):
    """LightFM (Kula 2015): a hybrid matrix factorisation trained by LightFM's own SGD.

    **LightFM samples its own negatives**; the common
    :class:`~bench.sampler.NegativeSampler` is *not* used (:meth:`make_sampler`
    returns ``None`` and a ``sampler`` passed to :meth:`fit` is ignored).
    With ``loss="warp"`` every positive draws uniform random items until one
    violates the margin of 1 (at most ``max_sampled`` tries) and the step size
    is scaled by the estimated rank; ``bpr`` draws one uniform negative per
    positive; ``warp-kos`` is k-order-statistic WARP (LightFM's own ``k=5``,
    ``n=10``). LightFM's negatives may be items the user liked in train.

    The score of user ``u`` and item ``i`` is
    ``<p_u, q_i> + b_u + b_i`` with ``p_u = sum_f x_uf e_f`` and ``b_u = sum_f
    x_uf c_f`` over the user's feature row ``x_u`` (likewise for items). Without
    side features the feature rows are the identity (plain biased MF).

    Parameters
    ----------
    loss : {"warp", "bpr", "warp-kos"}
        LightFM's loss.
    no_components : int
        Dimension of the latent embeddings.
    learning_schedule : {"adagrad", "adadelta"}
        LightFM's per-parameter learning-rate schedule.
    learning_rate : float
        Initial learning rate (``adagrad`` only).
    rho, epsilon : float
        ``adadelta`` parameters (``0 < rho < 1``, ``epsilon > 0``).
    item_alpha, user_alpha : float
        L2 penalty on item and user feature parameters (>= 0).
    max_sampled : int
        Maximum negatives WARP draws per positive.
    num_threads : int
        LightFM's OpenMP threads. With more than one, training is Hogwild
        (lock-free, racy), so the same seed no longer gives bit-identical
        embeddings: keep 1 for reproducible runs (the default and the registry
        presets do). On ML-100K two threads buy little (see the notes).
    epochs : int
        Passes over the training positives (one ``fit_partial`` call each, so
        learning curves exist).
    use_features : bool
        Pass side features to LightFM: each user (item) row is its identity
        column followed by its side features, so the model keeps a free
        embedding per user and item on top of the shared feature embeddings.
        Ignored (identity only) when :meth:`fit` gets ``features=None``.
    normalize_features : bool
        With ``use_features``, scale each feature row to sum 1 (as LightFM's
        own ``Dataset`` builder does). Off by default: on ML-100K ``ua`` it
        cost about 0.04 AUC after 10 epochs (0.895 vs 0.932), because it
        shrinks the identity column each user and item relies on.

    Notes
    -----
    The interactions LightFM sees are the binarised train positives (ratings
    in ``train.weights`` are not used as sample weights).
    """

    uses_sampler: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    uses_features: ClassVar[bool] = True
    can_score_cold_users: ClassVar[bool] = True
    can_score_cold_items: ClassVar[bool] = True
    iterative: ClassVar[bool] = True
    fit_scaling: ClassVar[str] = CACHE_BOUND_SCALING.format(
        what="LightFM's Cython loop, one (user, item) pair at a time,",
        state="the factor and learning-rate tables",
        unit="positive",
        size="about 85 MB of user and item state",
        evidence="benchmarks/test_bench_lightfm.py",
    )
    notes: ClassVar[str] = (
        "LightFM samples its own negatives (WARP/BPR inside LightFM); the common sampler is "
        "not used. num_threads > 1 is Hogwild and not bit-reproducible."
    )

    def scores_cold(self) -> tuple[bool, bool]:
        """Cold users and items are scored from side features only with ``use_features``."""
        return bool(self.use_features), bool(self.use_features)

    def __init__(
        self,
        *,
        loss: str = "warp",
        no_components: int = 64,
        learning_schedule: str = "adagrad",
        learning_rate: float = 0.05,
        rho: float = 0.95,
        epsilon: float = 1e-6,
        item_alpha: float = 0.0,
        user_alpha: float = 0.0,
        max_sampled: int = 10,
        num_threads: int = 1,
        epochs: int = 10,
        use_features: bool = False,
        normalize_features: bool = False,
    ) -> None:
        self.loss = loss
        self.no_components = no_components
        self.learning_schedule = learning_schedule
        self.learning_rate = learning_rate
        self.rho = rho
        self.epsilon = epsilon
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.num_threads = num_threads
        self.epochs = epochs
        self.use_features = use_features
        self.normalize_features = normalize_features

    # -- parameters -------------------------------------------------------
    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        super().validate_params()
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.learning_schedule not in _SCHEDULES:
            raise ValueError(
                f"learning_schedule must be one of {_SCHEDULES}, got {self.learning_schedule!r}"
            )
        check_positive("no_components", self.no_components, integer=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("rho", self.rho)
        if self.rho >= 1:
            raise ValueError(f"rho must be < 1, got {self.rho!r}")
        check_positive("epsilon", self.epsilon)
        check_positive("item_alpha", self.item_alpha, allow_zero=True)
        check_positive("user_alpha", self.user_alpha, allow_zero=True)
        check_positive("max_sampled", self.max_sampled, integer=True)
        check_positive("num_threads", self.num_threads, integer=True)
        for name in ("use_features", "normalize_features"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {value!r}")

    def make_sampler(self, train: Interactions) -> NegativeSampler | None:
        """``None``: LightFM draws its own negatives."""
        return None

    # -- features ---------------------------------------------------------
    def _feature_matrix(self, side: SideFeatures | None, num_rows: int, what: str):
        """Identity columns plus (optionally row-normalised) side features, CSR float32.

        Returns ``None`` (LightFM's implicit identity) when there are no side features.
        """
        if side is None:
            return None
        matrix = side.matrix
        if matrix.shape[0] != num_rows:
            raise ValueError(
                f"{what} features have {matrix.shape[0]} rows, expected {num_rows} (one per {what})"
            )
        combined = sp.hstack(
            [sp.identity(num_rows, dtype=np.float32, format="csr"), matrix], format="csr"
        ).astype(np.float32)
        if self.normalize_features:
            row_sums = np.asarray(np.abs(combined).sum(axis=1), dtype=np.float32).ravel()
            combined = sp.csr_matrix(sp.diags(1.0 / row_sums) @ combined, dtype=np.float32)
        combined.sort_indices()
        return combined

    # -- training ---------------------------------------------------------
    def fit(
        self,
        train: Interactions,
        *,
        sampler: NegativeSampler | None = None,
        epochs: int | None = None,
        rng: np.random.Generator,
        on_epoch: EpochCallback | None = None,
        features: tuple[SideFeatures | None, SideFeatures | None] | None = None,
    ) -> LightFMModel:
        """Train LightFM one ``fit_partial`` epoch at a time.

        Parameters
        ----------
        train : Interactions
            Train positives (binarised).
        sampler : NegativeSampler, optional
            Ignored: LightFM samples its own negatives.
        epochs : int, optional
            Overrides ``self.epochs``.
        rng : numpy.random.Generator
            Seeds LightFM's ``RandomState`` (initialisation, shuffling, negatives).
        on_epoch : callable, optional
            Called with the 1-based epoch after each epoch.
        features : (SideFeatures or None, SideFeatures or None), optional
            User and item side features; used only when ``use_features``.

        Returns
        -------
        LightFMModel
            ``self``.
        """
        epochs = self._begin_fit(train, rng, epochs)
        if sampler is not None:
            log.debug("LightFMModel ignores the common sampler (%r)", sampler)
        num_users, num_items = train.shape

        user_matrix = item_matrix = None
        if self.use_features and features is not None:
            user_side, item_side = features
            user_matrix = self._feature_matrix(user_side, num_users, "user")
            item_matrix = self._feature_matrix(item_side, num_items, "item")
        self._user_matrix, self._item_matrix = user_matrix, item_matrix

        interactions = train.to_bool_csr().astype(np.float32).tocoo()
        self._lightfm = LightFM(
            no_components=int(self.no_components),
            learning_schedule=self.learning_schedule,
            loss=self.loss,
            learning_rate=float(self.learning_rate),
            rho=float(self.rho),
            epsilon=float(self.epsilon),
            item_alpha=float(self.item_alpha),
            user_alpha=float(self.user_alpha),
            max_sampled=int(self.max_sampled),
            random_state=np.random.RandomState(derive_seed(rng)),
        )
        self._num_users, self._num_items = num_users, num_items
        for epoch in range(1, epochs + 1):
            self._lightfm.fit_partial(
                interactions,
                user_features=user_matrix,
                item_features=item_matrix,
                epochs=1,
                num_threads=int(self.num_threads),
            )
            for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases"):
                check_finite(getattr(self._lightfm, name), f"LightFM {name} after epoch {epoch}")
            self._representations = None
            self._fitted = True
            if on_epoch is not None:
                on_epoch(epoch)
        return self

    # -- scoring ----------------------------------------------------------
    def _get_representations(self):
        if self._representations is None:
            model = self._lightfm
            item_biases, item_embeddings = model.get_item_representations(self._item_matrix)
            user_biases, user_embeddings = model.get_user_representations(self._user_matrix)
            self._representations = (
                np.asarray(user_biases, dtype=np.float32),
                np.asarray(user_embeddings, dtype=np.float32),
                np.asarray(item_biases, dtype=np.float32),
                np.ascontiguousarray(np.asarray(item_embeddings, dtype=np.float32).T),
            )
        return self._representations

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """LightFM's prediction for every item, as one matmul plus the two bias vectors.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray, float32, shape (n, num_items)
            ``p_u . q_i + b_u + b_i`` (what ``LightFM.predict`` returns, up to
            float32 summation order).
        """
        user_ids = self._check_user_ids(user_ids)
        user_biases, user_embeddings, item_biases, item_embeddings_t = self._get_representations()
        scores = user_embeddings[user_ids] @ item_embeddings_t
        scores += item_biases[None, :]
        scores += user_biases[user_ids, None]
        return self._finish_scores(scores)
