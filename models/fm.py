"""A factorization machine (Rendle 2010) over user/item ids and side features, in PyTorch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from bench.interactions import Interactions
from models.base import (
    CACHE_BOUND_SCALING,
    DENSE_UPDATE_SCALING,
    TripletRecommender,
    check_finite,
    check_positive,
)
from models.torch_triplet import torch_threads

if TYPE_CHECKING:  # pragma: no cover - typing only
    from bench.datasets.dataset import SideFeatures
    from bench.sampler import Triplets

__all__ = ["LOSSES", "OPTIMIZERS", "FactorizationMachine"]

#: Pairwise losses on ``d = fm(u, pos) - fm(u, neg)``.
LOSSES: dict[str, str] = {
    "bpr": "-log sigmoid(d) (Rendle et al. 2009)",
    "margin": "max(0, margin - d) (the notebook's hinge)",
}
#: Update rules. ``adam``, ``adagrad`` and ``sgd`` are ``torch.optim``'s, on the dense
#: gradient of the whole table (Adam's moments decay, and every row moves, on every
#: step); ``lazy-adam`` is Adam on the rows of the step's batch only (see
#: :class:`_LazyAdam`).
OPTIMIZERS: tuple[str, ...] = ("adam", "adagrad", "sgd", "lazy-adam")

# Ids only, train with the compiled step (models._fm_compiled) instead of PyTorch ops:
# the same update, up to float rounding, about 10x faster at batch 256.
_COMPILED = True

# torch.optim's Adam defaults, for ``lazy-adam``.
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPSILON = 1e-8


def _padded_rows(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows as padded ``(n_rows, max_nnz)`` int64 column and float32 value arrays.

    Padding slots have column 0 and value 0, so they add nothing to any sum
    (and get a zero gradient); the third array, bool ``(n_rows, max_nnz)``,
    marks the real slots.
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
    real = np.zeros((matrix.shape[0], width), dtype=bool)
    real[rows, slots] = True
    return columns, values, real


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


class _LazyAdam:
    """Adam on the rows of each step's batch only ("lazy" Adam, as TF Addons' LazyAdam).

    A row's moments and value change only on steps where the batch touches
    it; rows outside the batch keep their moments and do not move (dense
    Adam would decay the moments and move every row by its momentum). The
    bias correction uses the global step count. Constants are
    ``torch.optim.Adam``'s (betas 0.9 / 0.999, ``eps`` 1e-8 added to
    ``sqrt(v_hat)``). A step costs ``O(rows in the batch)``, not
    ``O(table)``.
    """

    def __init__(self, table: torch.Tensor, learning_rate: float) -> None:
        self.table = table
        self.learning_rate = float(learning_rate)
        # m and v side by side: one gather and one scatter per step for both.
        self.moments = table.new_zeros(table.shape[0], 2, table.shape[1])
        self.iterations = 0

    @property
    def m(self) -> torch.Tensor:
        """First moments, shape of the table."""
        return self.moments[:, 0]

    @property
    def v(self) -> torch.Tensor:
        """Second moments, shape of the table."""
        return self.moments[:, 1]

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        """Update the distinct ``rows`` by their summed ``grads`` (``(len(rows), width)``)."""
        self.iterations += 1
        beta1, beta2 = _ADAM_BETAS
        unique, inverse = torch.unique(rows, return_inverse=True)
        grad = grads.new_zeros(unique.shape[0], grads.shape[1]).index_add_(0, inverse, grads)
        moments = self.moments.index_select(0, unique)
        m, v = moments[:, 0], moments[:, 1]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.moments.index_copy_(0, unique, moments)
        t = self.iterations
        denom = v.sqrt_().div_(math.sqrt(1 - beta2**t)).add_(_ADAM_EPSILON)
        self.table.index_add_(0, unique, m.div_(denom).mul_(-self.learning_rate / (1 - beta1**t)))


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
    optimizer : {"adam", "adagrad", "sgd", "lazy-adam"}
        ``torch.optim``'s Adam, Adagrad or SGD on the whole table (dense
        gradient; Adam moves every row on every step), or Adam on the batch's
        rows only (``lazy-adam``, see :data:`OPTIMIZERS`).
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
    The batch gradient is written out (no autograd): ``d fm / d v_j = x_j (s -
    x_j v_j)`` with ``s`` the pair's sum of ``x_j v_j``, ``d fm / d w_j = x_j``,
    plus the L2 term, per feature slot of the batch (see
    :meth:`_row_gradients`; ids only, :meth:`_ids_only_gradients` skips the
    feature rows). The per-slot gradients are scattered into a whole-table
    gradient for ``adam`` and ``adagrad`` (``torch.optim``'s fused
    implementations: one pass over the table per step), straight into the
    table for ``sgd``, and only onto the batch's rows for ``lazy-adam``. With
    a dense optimizer a step therefore still costs ``O(table)``; with
    ``lazy-adam`` it costs ``O(batch * k * max_nnz)``. The tests check the
    gradients against autograd on the sum-square formulation. Feature rows
    are stored padded to the longest row of their block, so a step costs
    ``O(k * max_nnz)`` per row; fine for one-hot side information.
    On ids only the epoch runs in compiled loops (:mod:`models._fm_compiled`,
    numba): the same batches, batch gradient and update rules as the PyTorch
    ops, up to float32 rounding, without their per-operation overhead (about
    2.7 us a triplet at batch 256 before, 0.7 us with ``lazy-adam`` and 0.3 us
    with ``sgd`` on ML-1M). The dense rules still step over the whole table in
    torch.
    Deterministic on CPU: the initial factors come from a ``torch.Generator``
    seeded by ``derive_seed(rng)`` (the global torch seed is never touched),
    and the triplets and their order from the sampler and ``rng``.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    uses_features: ClassVar[bool] = True
    can_score_cold_users: ClassVar[bool] = True
    can_score_cold_items: ClassVar[bool] = True

    @property
    def fit_scaling(self) -> str:  # type: ignore[override]
        """Why the fit grows faster than the data: the dense optimizers' whole-table steps,
        or else the sparse steps' random row accesses (see benchmarks/test_bench_fm.py)."""
        if self.optimizer in ("adam", "adagrad"):
            return DENSE_UPDATE_SCALING.format(
                what=f"optimizer {self.optimizer!r}",
                instead="optimizer 'lazy-adam' or 'sgd' touches only the batch's rows",
            )
        lazy = self.optimizer == "lazy-adam"
        return CACHE_BOUND_SCALING.format(
            what=f"optimizer {self.optimizer!r}, on a batch's rows only,",
            state="the table" + (" and Adam's two moments" if lazy else ""),
            unit="triplet",
            size="about 43 MB of table" + (" and 86 MB of moments" if lazy else ""),
            evidence="benchmarks/test_bench_fm.py (lazy Adam: 2.3x from ML-1M-sized to "
            "ML-20M-sized tables, with the compiled step's prefetching)",
        )

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
        user_columns, user_values, user_real = _padded_rows(user_block)
        item_columns, item_values, item_real = _padded_rows(item_block)
        offset = user_block.shape[1]
        self._user_columns = torch.from_numpy(user_columns)
        self._user_values = torch.from_numpy(user_values)
        self._user_real = torch.from_numpy(user_real)
        self._item_columns = torch.from_numpy(item_columns + offset)
        self._item_values = torch.from_numpy(item_values)
        self._item_real = torch.from_numpy(item_real)
        self._item_offset = offset
        self._num_user_features = user_block.shape[1] - num_users
        self._num_item_features = item_block.shape[1] - num_items
        # Ids only: every row is its own one-hot, so the step needs no feature rows.
        self._ids_only = self._num_user_features == 0 and self._num_item_features == 0
        return offset + item_block.shape[1]

    # -- training ---------------------------------------------------------
    def _make_optimizer(self, table: torch.Tensor):
        """The update rule on ``table``; ``None`` for ``sgd`` (scattered in :meth:`_apply`)."""
        lr = float(self.learning_rate)
        if self.optimizer == "lazy-adam":
            return _LazyAdam(table, lr)
        if self.optimizer == "sgd":
            return None
        # fused: one pass over the table per step instead of one per elementwise op;
        # the same update rule as the default implementation.
        if self.optimizer == "adam":
            return torch.optim.Adam([table], lr=lr, fused=True)
        return torch.optim.Adagrad([table], lr=lr, fused=True)

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
        table = self._model.table
        self._optimizer = self._make_optimizer(table)
        # The dense optimizers read a whole-table gradient, rebuilt every step.
        self._dense_grad = (
            torch.zeros_like(table) if isinstance(self._optimizer, torch.optim.Optimizer) else None
        )
        self._cache = None
        self._scratch = None  # the compiled step's scratch arrays, made on first use
        self._steps = 0  # batches stepped so far (the compiled step's batch stamps)

    def _epoch_context(self):
        return torch_threads(int(self.num_threads))

    def _train_epoch(self, triplets: Triplets) -> float:
        """One pass over an epoch of triplets; returns the mean pairwise loss."""
        if self._ids_only and _COMPILED:
            return self._train_epoch_compiled(triplets)
        batch_size = int(self.batch_size)
        users, pos, neg = (
            torch.from_numpy(np.array(ids, dtype=np.int64))
            for ids in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        )
        gradients = self._ids_only_gradients if self._ids_only else self._row_gradients
        total = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, users.shape[0], batch_size):
                end = start + batch_size
                items = torch.cat([pos[start:end], neg[start:end]])
                batch_users = users[start:end]
                loss, rows, grads = gradients(batch_users, items)
                self._apply(rows, grads)
                total += loss * batch_users.shape[0]
        self._cache = None  # the scoring parts are stale
        return float(total) / max(users.shape[0], 1)

    def warm_up(self) -> None:
        """Load the compiled step's kernels (:func:`models._fm_compiled.warm_up`) before timing."""
        if _COMPILED:
            from models import _fm_compiled

            _fm_compiled.warm_up()

    def _train_epoch_compiled(self, triplets: Triplets) -> float:
        """:meth:`_train_epoch` on ids only, in compiled loops (:mod:`models._fm_compiled`).

        The same batches, batch gradient and update rules as the PyTorch step
        (:meth:`_ids_only_gradients` and :meth:`_apply`), up to float rounding;
        the tests compare the two. ``sgd`` and ``lazy-adam`` run the whole
        epoch in one call; the dense rules get each batch's gradient from it and
        step in torch.
        """
        from models import _fm_compiled as compiled

        triplet_arrays = tuple(
            np.ascontiguousarray(ids, dtype=np.int64)
            for ids in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        )
        n = triplet_arrays[0].shape[0]
        table = self._model.table.detach().numpy()  # the parameter's memory, updated in place
        batch_size = int(self.batch_size)
        if self._scratch is None:
            self._scratch = compiled.make_scratch(table.shape[0], batch_size, table.shape[1])
        objective = (
            self._item_offset,
            self.loss == "margin",
            float(self.margin),
            float(self.l2_reg),
        )
        if self._dense_grad is None:
            lazy = self._optimizer is not None
            rule = compiled.LAZY_ADAM if lazy else compiled.SGD
            moments = self._optimizer.moments.numpy() if lazy else np.zeros((1, 2, 1), np.float32)
            total, self._steps = compiled.ids_only_epoch(
                table, triplet_arrays, batch_size, objective, rule, float(self.learning_rate),
                moments, self._steps, self._scratch, compiled.PREFETCH_AHEAD,
            )  # fmt: skip
            if lazy:
                self._optimizer.iterations = self._steps
        else:
            total = 0.0
            dense = self._dense_grad.numpy()
            for start in range(0, n, batch_size):
                self._steps += 1
                end = min(start + batch_size, n)
                total += compiled.ids_only_gradient(
                    table, triplet_arrays, start, end, objective, self._scratch, self._steps, dense
                )
                self._model.table.grad = self._dense_grad
                self._optimizer.step()
        self._cache = None  # the scoring parts are stale
        return float(total) / max(n, 1)

    def _loss_slope(self, diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch-mean pairwise loss on ``diff`` (n,) and its derivative ``dloss/ddiff`` (n,)."""
        n = diff.shape[0]
        if self.loss == "bpr":
            # d softplus(-d) / dd = -sigmoid(-d)
            return F.softplus(-diff).mean(), torch.sigmoid(-diff).div_(-n)
        hinge = float(self.margin) - diff
        # relu's derivative is 0 at 0, as autograd's
        return hinge.clamp_min(0).mean(), (hinge > 0).to(diff.dtype).div_(-n)

    def _ids_only_gradients(self, users: torch.Tensor, items: torch.Tensor):
        """Loss, table rows and their gradients for a batch, ids only (closed form).

        With one-hot rows ``fm(u, i) = w0 + w_u + w_i + <v_u, v_i>``, so for
        ``d = fm(u, p) - fm(u, q)``, ``g = dloss/dd`` and ``c = 2 l2_reg / n``::

            d/d[v_u, w_u] = [g (v_p - v_q), 0] + c [v_u, w_u]
            d/d[v_p, w_p] = [g v_u, g] + c [v_p, w_p]
            d/d[v_q, w_q] = -[g v_u, g] + c [v_q, w_q]

        Returns
        -------
        loss : torch.Tensor, scalar
            Batch-mean pairwise loss (without the L2 term).
        rows : torch.Tensor, int64, shape (3n,)
            Table rows (users, then positives, then negatives; repeats allowed).
        grads : torch.Tensor, float32, shape (3n, k + 1)
            Gradient of the batch objective with respect to each row (repeats add up).
        """
        table = self._model.table
        k = self._model.latent_dim
        n = users.shape[0]
        item_rows = items + self._item_offset
        user_part = table.index_select(0, users)
        item_part = table.index_select(0, item_rows)
        user_v = user_part[:, :k]
        item_v, item_w = item_part[:, :k], item_part[:, k]
        item_v_diff = item_v[:n] - item_v[n:]
        diff = torch.linalg.vecdot(user_v, item_v_diff)
        diff += item_w[:n] - item_w[n:]
        loss, slope = self._loss_slope(diff)
        signed = torch.cat([slope, -slope]).unsqueeze_(1)  # dloss/dfm(u, i) per item row
        scale = 2 * float(self.l2_reg) / n
        grad_users = user_part * scale
        grad_users[:, :k].addcmul_(item_v_diff, slope.unsqueeze(1))
        grad_items = item_part * scale
        grad_items[:, :k].addcmul_(user_v.repeat(2, 1), signed)
        grad_items[:, k:] += signed
        return loss, torch.cat([users, item_rows]), torch.cat([grad_users, grad_items])

    def _row_gradients(self, users: torch.Tensor, items: torch.Tensor):
        """Loss, table rows and their gradients for a batch over padded feature rows.

        With ``s = s_u + s_i`` the sum of ``x_j v_j`` over the pair's
        features, ``d fm / d v_j = x_j (s - x_j v_j)`` and ``d fm / d w_j = x_j``;
        the user block's ``w`` and its own pairs cancel in ``fm(u, p) - fm(u, q)``.
        The L2 term adds ``2 l2_reg x_j^2 [v_j, w_j] / n`` per occurrence.

        Returns
        -------
        loss : torch.Tensor, scalar
        rows : torch.Tensor, int64, shape (r,)
            The table rows of the batch's feature slots (with the padding
            slots, whose gradient is zero, except for ``lazy-adam``).
        grads : torch.Tensor, float32, shape (r, k + 1)
            Gradient of the batch objective per slot (repeated rows add up).
        """
        table = self._model.table
        k = self._model.latent_dim
        n = users.shape[0]
        width = k + 1
        user_columns = self._user_columns.index_select(0, users)
        item_columns = self._item_columns.index_select(0, items)
        user_values = self._user_values.index_select(0, users)
        item_values = self._item_values.index_select(0, items)
        user_rows, item_rows = user_columns.view(-1), item_columns.view(-1)
        # x_j [v_j, w_j] per slot; index_select: advanced indexing is several times slower
        user_part = table.index_select(0, user_rows).view(*user_columns.shape, width)
        user_part *= user_values.unsqueeze(-1)
        item_part = table.index_select(0, item_rows).view(*item_columns.shape, width)
        item_part *= item_values.unsqueeze(-1)
        user_sum = user_part[..., :k].sum(1)
        item_sum = item_part[..., :k].sum(1)
        pair_sum = user_sum.repeat(2, 1) + item_sum  # s_u + s_i, (2n, k)
        fm = item_part[..., k].sum(1)
        fm += 0.5 * (pair_sum.pow(2).sum(1) - item_part[..., :k].pow(2).sum((1, 2)))
        loss, slope = self._loss_slope(fm[:n] - fm[n:])
        signed = torch.cat([slope, -slope])  # dloss/dfm(u, i) per item row
        scale = 2 * float(self.l2_reg) / n
        x_user, x_item = user_values.unsqueeze(-1), item_values.unsqueeze(-1)
        grad_users = user_part * (x_user * scale)
        user_slope = (item_sum[:n] - item_sum[n:]).mul_(slope.unsqueeze(1))
        grad_users[..., :k] += x_user * user_slope.unsqueeze(1)
        grad_items = item_part * (x_item * scale)
        x_signed = x_item * signed.view(-1, 1, 1)
        grad_items[..., :k] += x_signed * (pair_sum.unsqueeze(1) - item_part[..., :k])
        grad_items[..., k:] += x_signed
        rows = torch.cat([user_rows, item_rows])
        grads = torch.cat([grad_users.view(-1, width), grad_items.view(-1, width)])
        if self.optimizer == "lazy-adam":
            # Padding slots add a zero gradient to row 0, a no-op for the dense rules
            # and for sgd, but they would count as a touch for lazy-adam.
            real = torch.cat(
                [
                    self._user_real.index_select(0, users).view(-1),
                    self._item_real.index_select(0, items).view(-1),
                ]
            )
            rows, grads = rows[real], grads[real]
        return loss, rows, grads

    def _apply(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        """One optimizer step on the table from per-row gradients (repeated rows add up)."""
        table = self._model.table
        if self._optimizer is None:
            # Plain SGD: the rows outside the batch have zero gradient, so scattering
            # -lr * grad is the dense update.
            table.index_add_(0, rows, grads.mul_(-float(self.learning_rate)))
        elif self._dense_grad is None:
            self._optimizer.step(rows, grads)
        else:
            self._dense_grad.zero_().index_add_(0, rows, grads)
            table.grad = self._dense_grad
            self._optimizer.step()

    def _check_weights(self, epoch: int) -> None:
        for name, param in self._model.named_parameters():
            check_finite(param.detach().numpy(), f"FM parameter {name} after epoch {epoch}")

    def _end_training(self) -> None:
        self._model.table.grad = None
        del self._optimizer, self._dense_grad
        self._scratch = None

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
