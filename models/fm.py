"""A factorization machine (Rendle 2010) over user/item ids and side features, in PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from bench.interactions import Interactions
from models.base import TripletRecommender, check_finite, check_positive
from models.torch_triplet import torch_threads

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.dataset import SideFeatures
    from bench.sampler import Triplets

__all__ = ["LOSSES", "OPTIMIZERS", "FactorizationMachine"]

#: Pairwise losses on ``d = fm(u, pos) - fm(u, neg)``.
LOSSES: dict[str, str] = {
    "bpr": "-log sigmoid(d) (Rendle et al. 2009)",
    "margin": "max(0, margin - d) (the notebook's hinge)",
}
OPTIMIZERS: tuple[str, ...] = ("adam", "adagrad", "sgd")


def _padded_rows(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows as padded ``(n_rows, max_nnz)`` int64 column and float32 value arrays.

    Padding slots have column 0 and value 0, so they add nothing to any sum
    (and get no gradient).
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    width = max(int(counts.max(initial=0)), 1)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    slots = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    columns = np.zeros((matrix.shape[0], width), dtype=np.int64)
    values = np.zeros((matrix.shape[0], width), dtype=np.float32)
    columns[rows, slots] = matrix.indices
    values[rows, slots] = matrix.data
    return columns, values


class _FMParameters(torch.nn.Module):
    """Global bias ``w0`` and one row ``[v_j, w_j]`` (factors, then linear weight) per feature.

    Keeping ``w_j`` as the last column of the factor table means one gather
    per block of feature rows fetches both.
    """

    def __init__(
        self, num_features: int, latent_dim: int, init_std: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        table = torch.randn(num_features, latent_dim + 1, generator=generator) * init_std
        table[:, latent_dim] = 0.0
        self.w0 = torch.nn.Parameter(torch.zeros(()))
        self.table = torch.nn.Parameter(table)

    def part(self, columns: torch.Tensor, values: torch.Tensor):
        """Sums over the non-zeros of a block of feature rows.

        Parameters
        ----------
        columns : torch.Tensor, int64, shape (B, m)
        values : torch.Tensor, float32, shape (B, m)

        Returns
        -------
        s : torch.Tensor, shape (B, k)
            ``sum_j x_j v_j``.
        sq : torch.Tensor, shape (B,)
            ``sum_j x_j^2 |v_j|^2``.
        linear : torch.Tensor, shape (B,)
            ``sum_j x_j w_j``.
        linear_sq : torch.Tensor, shape (B,)
            ``sum_j x_j^2 w_j^2`` (for the L2 penalty).
        """
        k = self.latent_dim
        xv = self.table[columns] * values.unsqueeze(-1)
        factors, linear = xv[..., :k], xv[..., k]
        return (factors.sum(1), factors.pow(2).sum((1, 2)), linear.sum(1), linear.pow(2).sum(1))


class FactorizationMachine(TripletRecommender):
    """Rendle's factorization machine on one-hot ids plus side features, trained on triplets.

    The input of a (user, item) pair is the sparse vector ``x = [x_u, x_i]``:
    the user block holds the user one-hot followed by the user's side features
    (age bucket, gender, occupation on MovieLens), the item block the item
    one-hot followed by the item's side features (genres, release decade). The
    model is

    ``fm(x) = w0 + sum_j w_j x_j + sum_{j<l} <v_j, v_l> x_j x_l``

    with the pairwise term computed in ``O(k * nnz(x))`` by the sum-square
    identity ``sum_{j<l} <v_j, v_l> x_j x_l = 1/2 (|sum_j x_j v_j|^2 -
    sum_j x_j^2 |v_j|^2)``. Because ``x`` splits into a user block and an item
    block, ``fm(u, i) = a_u + b_i + <s_u, s_i>`` where ``s_u = sum_{j in u}
    x_j v_j``, ``a_u = w0 + linear_u + pairs within the user block`` and
    likewise ``b_i``: scoring the whole catalogue is one matmul plus two bias
    vectors. Without side features it is a biased matrix factorisation
    ``w0 + w_u + w_i + <v_u, v_i>``.

    Training: each epoch draws one triplet ``(u, pos, neg)`` per train
    positive from the common sampler and minimises the pairwise loss on
    ``d = fm(u, pos) - fm(u, neg)`` (``bpr``: ``softplus(-d)``; ``margin``:
    ``relu(margin - d)``), averaged over the batch, plus ``l2_reg`` times the
    sum of ``x_j^2 (|v_j|^2 + w_j^2)`` over the non-zero features of the
    batch's user, positive and negative rows, divided by the batch size
    (per-example L2, as in Rendle's SGD for FMs; rows not in the batch are not
    shrunk).

    Parameters
    ----------
    latent_dim : int
        ``k``, the factor dimension.
    loss : {"bpr", "margin"}
        Pairwise loss (see :data:`LOSSES`).
    margin : float
        Margin of the ``margin`` loss, and of the ``hard`` sampler.
    l2_reg : float
        Per-example L2 penalty (>= 0).
    learning_rate : float
        Optimizer step size.
    batch_size : int
        Triplets per step.
    optimizer : {"adam", "adagrad", "sgd"}
        ``torch.optim`` optimizer.
    epochs : int
        Passes over the train positives.
    negatives : {"uniform", "uniform-unseen", "popularity", "hard"}
        Common sampler strategy.
    negatives_alpha : float
        Popularity exponent of the ``popularity`` strategy.
    hard_candidates : int
        Candidates per triplet of the ``hard`` strategy.
    use_user_features, use_item_features : bool
        Append the user (item) side features given to :meth:`fit`; ignored when
        ``features`` is ``None`` or that side is ``None`` (ids only).
    init_std : float
        Standard deviation of the normal initialisation of ``V`` (``w`` and
        ``w0`` start at 0).
    num_threads : int
        ``torch.set_num_threads`` during fit and score (restored afterwards).

    Attributes
    ----------
    loss_history_ : list of float
        Mean pairwise loss (without the L2 term) of each epoch so far.

    Notes
    -----
    Feature rows are stored padded to the longest row of their block, so a
    step costs ``O(k * max_nnz)`` per row; fine for one-hot side information.
    Deterministic on CPU: the initial factors come from a ``torch.Generator``
    seeded by ``derive_seed(rng)`` (the global torch seed is never touched),
    and the triplets and their order from the sampler and ``rng``.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    uses_features: ClassVar[bool] = True
    can_score_cold_users: ClassVar[bool] = True
    can_score_cold_items: ClassVar[bool] = True
    notes: ClassVar[str] = (
        "factorization machine over user/item one-hots plus side features, pairwise loss on "
        "the common sampler's triplets"
    )

    def scores_cold(self) -> tuple[bool, bool]:
        """Cold users (items) are scored from their side features, when those are used."""
        return bool(self.use_user_features), bool(self.use_item_features)

    def __init__(
        self,
        *,
        latent_dim: int = 64,
        loss: str = "bpr",
        margin: float = 1.0,
        l2_reg: float = 0.01,
        learning_rate: float = 0.005,
        batch_size: int = 256,
        optimizer: str = "adam",
        epochs: int = 10,
        negatives: str = "uniform",
        negatives_alpha: float = 0.75,
        hard_candidates: int = 10,
        use_user_features: bool = True,
        use_item_features: bool = True,
        init_std: float = 0.01,
        num_threads: int = 1,
    ) -> None:
        self.latent_dim = latent_dim
        self.loss = loss
        self.margin = margin
        self.l2_reg = l2_reg
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.epochs = epochs
        self.negatives = negatives
        self.negatives_alpha = negatives_alpha
        self.hard_candidates = hard_candidates
        self.use_user_features = use_user_features
        self.use_item_features = use_item_features
        self.init_std = init_std
        self.num_threads = num_threads

    # -- parameters -------------------------------------------------------
    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._validate_triplet_params(OPTIMIZERS)
        check_positive("latent_dim", self.latent_dim, integer=True)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        for name in ("use_user_features", "use_item_features"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        check_positive("init_std", self.init_std)
        check_positive("num_threads", self.num_threads, integer=True)

    # -- feature layout ---------------------------------------------------
    def _build_rows(
        self,
        train: Interactions,
        features: tuple[SideFeatures | None, SideFeatures | None] | None,
    ) -> int:
        """Lay out the feature space and the padded user and item rows; return its size.

        Columns: ``[user ids | user side features | item ids | item side features]``.
        """
        num_users, num_items = train.shape
        user_side = item_side = None
        if features is not None:
            if not (isinstance(features, tuple) and len(features) == 2):
                raise ValueError(
                    "features must be None or a (user_features, item_features) tuple, got "
                    f"{type(features).__name__}"
                )
            user_side, item_side = features
        blocks = []
        for what, side, wanted, n_rows in (
            ("user", user_side, self.use_user_features, num_users),
            ("item", item_side, self.use_item_features, num_items),
        ):
            parts = [sp.identity(n_rows, dtype=np.float32, format="csr")]
            if wanted and side is not None:
                if side.matrix.shape[0] != n_rows:
                    raise ValueError(
                        f"{what} features have {side.matrix.shape[0]} rows, expected {n_rows}"
                    )
                check_finite(side.matrix.data, f"{what} side features")
                parts.append(side.matrix)
            blocks.append(sp.hstack(parts, format="csr", dtype=np.float32))
        user_block, item_block = blocks
        user_columns, user_values = _padded_rows(user_block)
        item_columns, item_values = _padded_rows(item_block)
        offset = user_block.shape[1]
        self._user_columns = torch.from_numpy(user_columns)
        self._user_values = torch.from_numpy(user_values)
        self._item_columns = torch.from_numpy(item_columns + offset)
        self._item_values = torch.from_numpy(item_values)
        self._num_user_features = user_block.shape[1] - num_users
        self._num_item_features = item_block.shape[1] - num_items
        return offset + item_block.shape[1]

    # -- training ---------------------------------------------------------
    def _make_optimizer(self, params) -> torch.optim.Optimizer:
        lr = float(self.learning_rate)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        if self.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=lr)
        return torch.optim.SGD(params, lr=lr)

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """FM scores of ``(user_ids[n], item_ids[n])`` pairs (the ``hard`` sampler's callback)."""
        users = torch.from_numpy(np.asarray(user_ids, dtype=np.int64))
        items = torch.from_numpy(np.asarray(item_ids, dtype=np.int64))
        with torch.no_grad(), torch_threads(int(self.num_threads)):
            s_u, sq_u, lin_u, _ = self._model.part(
                self._user_columns[users], self._user_values[users]
            )
            s_i, sq_i, lin_i, _ = self._model.part(
                self._item_columns[items], self._item_values[items]
            )
            pairs = 0.5 * ((s_u + s_i).pow(2).sum(1) - sq_u - sq_i)
            scores = self._model.w0 + lin_u + lin_i + pairs
        return scores.numpy().astype(np.float64)

    def _start_training(
        self,
        train: Interactions,
        seed: int,
        features: tuple[SideFeatures | None, SideFeatures | None] | None,
    ) -> None:
        """Lay out the feature rows, draw the initial factors from ``seed``, set the optimizer."""
        num_features = self._build_rows(train, features)
        generator = torch.Generator().manual_seed(seed)
        with torch_threads(int(self.num_threads)):
            self._model = _FMParameters(
                num_features, int(self.latent_dim), float(self.init_std), generator
            )
        self._optimizer = self._make_optimizer(self._model.parameters())
        self._cache = None

    def _epoch_context(self):
        return torch_threads(int(self.num_threads))

    def _train_epoch(self, triplets: Triplets) -> float:
        """One pass over an epoch of triplets; returns the mean pairwise loss."""
        model = self._model
        optimizer = self._optimizer
        l2 = float(self.l2_reg)
        margin = float(self.margin)
        total = torch.zeros((), dtype=torch.float64)
        count = 0
        for users, pos, neg in triplets.batches(int(self.batch_size)):
            n = users.shape[0]
            users = torch.from_numpy(users.astype(np.int64))
            items = torch.from_numpy(np.concatenate([pos, neg]).astype(np.int64))
            s_u, sq_u, _, lin_sq_u = model.part(self._user_columns[users], self._user_values[users])
            s_i, sq_i, lin_i, lin_sq_i = model.part(
                self._item_columns[items], self._item_values[items]
            )
            # fm(u, i) = w0 + lin_u + lin_i + 1/2 (|s_u + s_i|^2 - sq_u - sq_i), the
            # sum-square trick on x = [x_u, x_i]; w0, lin_u and sq_u are the same for
            # pos and neg and cancel in the difference, so they are left out.
            fm = lin_i + 0.5 * ((s_u.repeat(2, 1) + s_i).pow(2).sum(1) - sq_i)
            diff = fm[:n] - fm[n:]
            if self.loss == "bpr":
                loss = F.softplus(-diff).mean()
            else:
                loss = F.relu(margin - diff).mean()
            objective = loss
            if l2 > 0:
                # sum over the batch's non-zero features of x_j^2 (|v_j|^2 + w_j^2)
                penalty = (sq_u + lin_sq_u).sum() + (sq_i + lin_sq_i).sum()
                objective = loss + l2 * penalty / n
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            total += loss.detach() * n
            count += n
        self._cache = None  # the scoring parts are stale
        return float(total) / max(count, 1)

    def _check_weights(self, epoch: int) -> None:
        for name, param in self._model.named_parameters():
            check_finite(param.detach().numpy(), f"FM parameter {name} after epoch {epoch}")

    def _end_training(self) -> None:
        del self._optimizer

    # -- scoring ----------------------------------------------------------
    def _parts(self):
        """Cached ``(a_u, s_u, b_i, s_i^T)`` as float32 numpy arrays."""
        if self._cache is None:
            with torch.no_grad(), torch_threads(int(self.num_threads)):
                s_u, sq_u, lin_u, _ = self._model.part(self._user_columns, self._user_values)
                s_i, sq_i, lin_i, _ = self._model.part(self._item_columns, self._item_values)
                user_bias = self._model.w0 + lin_u + 0.5 * (s_u.pow(2).sum(1) - sq_u)
                item_bias = lin_i + 0.5 * (s_i.pow(2).sum(1) - sq_i)
            self._cache = (
                user_bias.numpy().astype(np.float32),
                s_u.numpy().astype(np.float32),
                item_bias.numpy().astype(np.float32),
                np.ascontiguousarray(s_i.numpy().astype(np.float32).T),
            )
        return self._cache

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """FM scores of every catalogue item: ``a_u + b_i + s_u . s_i`` as one matmul.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray, float32, shape (n, num_items)
            Exactly ``fm([x_u, x_i])`` for each pair (up to float32 rounding).
        """
        user_ids = self._check_user_ids(user_ids)
        user_bias, user_sum, item_bias, item_sum_t = self._parts()
        scores = user_sum[user_ids] @ item_sum_t
        scores += item_bias[None, :]
        scores += user_bias[user_ids, None]
        return self._finish_scores(scores)
