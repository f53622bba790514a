"""The notebook's triplet models (bilinear and deep MLP) as PyTorch adapters.

The same two models as :mod:`models.keras_triplet`, trained on the same
objective: the margin loss ``max(0, margin + sim(u, neg) - sim(u, pos))``
averaged over a batch of triplets from the common
:class:`bench.sampler.NegativeSampler`, plus ``l2_reg`` times the sum of
squares of every weight table that Keras regularises (the whole embedding
tables, and the dense kernels of the deep model), added to every batch's loss
as Keras's ``embeddings_regularizer=l2(l2_reg)`` does. Initialisation follows
Keras's defaults (embeddings uniform in [-0.05, 0.05], dense kernels Glorot
uniform, zero biases) and the optimizers use Keras's update formulas and
defaults (Adam: betas 0.9 / 0.999, epsilon 1e-7 added to ``sqrt(v)``).

* :class:`TorchBilinear` computes its gradients in closed form (a handful of
  vectorised tensor operations per batch, no autograd graph) and, with
  ``optimizer="sgd"``, scatters them straight into the tables. That is what
  makes its ``fast`` preset train in a fraction of a second on ML-100K.
* :class:`TorchDeep` uses autograd through the MLP.

Randomness: every random draw (initial weights, dropout masks) comes from a
``torch.Generator`` seeded from :func:`models.base.derive_seed` of the ``rng``
given to ``fit``; the global torch seed is never touched. On CPU the same seed
gives the same weights. CUDA's ``index_add_`` accumulates with atomics, so
runs on a GPU may differ in the last bits.

PyTorch is imported here and nowhere else in rsbench (besides other torch adapters).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import DENSE_UPDATE_SCALING, SIMILARITIES, TripletRecommender, check_finite

__all__ = ["OPTIMIZERS", "SIMILARITIES", "TorchBilinear", "TorchDeep"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adagrad", "rmsprop", "sgd")

# Keras's L2 normalisation (``Dot(normalize=True)``) caps 1 / norm at 1 / epsilon.
_NORM_EPSILON = 1e-7
# Keras's default optimizer constants.
_ADAM_BETAS = (0.9, 0.999)
_KERAS_EPSILON = 1e-7
_ADAGRAD_INITIAL_ACCUMULATOR = 0.1
_RMSPROP_RHO = 0.9
# Keras's default embedding initialiser: uniform in [-0.05, 0.05].
_EMBEDDING_INIT = 0.05
# Lazy SGD decay (TorchBilinear): used when the per-step factor 1 - 2 lr l2 is at
# least this far from 0, and folded into the tables once the scale drops below
# _LAZY_FOLD_BELOW (float32 keeps its relative precision in between).
_LAZY_MIN_DECAY = 0.5
_LAZY_FOLD_BELOW = 2.0**-20
# TorchBilinear with SGD and lazy decay on CPU: run each epoch in the compiled loop
# (models._bilinear_compiled) instead of the torch batch step: the same update, up
# to float32 rounding, several times faster (the tests compare the two).
_COMPILED = True
# Deep scoring materialises (users x items x hidden_size) activations per block.
_SCORE_BLOCK_CELLS = 4_000_000


# -- helpers ------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(num_threads)``, restoring the old count."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous == num_threads:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _resolve_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``; ``ValueError`` if it is unknown or unavailable."""
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda[:index]'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:index]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available in this PyTorch build")
    return resolved


def _index_tensor(ids: np.ndarray, device: torch.device) -> torch.Tensor:
    """An int64 tensor of ``ids`` on ``device`` (a copy: inputs may be read-only arrays)."""
    return torch.from_numpy(np.array(ids, dtype=np.int64)).to(device)


def _inverse_norms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``1 / max(|x_i|, eps)`` per row ``(n, 1)`` and the mask of rows above the cap."""
    square = torch.linalg.vecdot(x, x).unsqueeze_(1)
    above = square > _NORM_EPSILON**2
    return square.clamp_min_(_NORM_EPSILON**2).rsqrt_(), above


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (rows shorter than the cap are scaled by ``1 / eps``)."""
    return x * _inverse_norms(x)[0]


def _check_tensor(tensor: torch.Tensor, what: str) -> None:
    """Raise ``FloatingPointError`` (via :func:`check_finite`) if ``tensor`` has NaN or inf."""
    if not bool(torch.isfinite(tensor).all()):
        check_finite(tensor.detach().cpu().numpy(), what)


class _Optimizer:
    """Keras 3's update rules on a list of tensors, updated in place (no autograd).

    ``step(grads)`` applies one update given the dense gradients of the full
    objective (data term plus L2 term) for every parameter.
    """

    def __init__(self, name: str, params: list[torch.Tensor], learning_rate: float) -> None:
        self.name = name
        self.params = params
        self.learning_rate = float(learning_rate)
        self.iterations = 0
        if name == "adam":
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
        elif name == "adagrad":
            self.acc = [torch.full_like(p, _ADAGRAD_INITIAL_ACCUMULATOR) for p in params]
        elif name == "rmsprop":
            self.vel = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """One update of every parameter from its gradient (``grads`` may be overwritten)."""
        self.iterations += 1
        lr = self.learning_rate
        if self.name == "sgd":
            for param, grad in zip(self.params, grads):
                param.add_(grad, alpha=-lr)
        elif self.name == "adam":
            beta1, beta2 = _ADAM_BETAS
            t = self.iterations
            alpha = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
            for param, grad, m, v in zip(self.params, grads, self.m, self.v):
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                param.addcdiv_(m, v.sqrt().add_(_KERAS_EPSILON), value=-alpha)
        elif self.name == "adagrad":
            for param, grad, acc in zip(self.params, grads, self.acc):
                acc.addcmul_(grad, grad)
                param.addcdiv_(grad, acc.add(_KERAS_EPSILON).sqrt_(), value=-lr)
        else:  # rmsprop
            for param, grad, vel in zip(self.params, grads, self.vel):
                vel.mul_(_RMSPROP_RHO).addcmul_(grad, grad, value=1 - _RMSPROP_RHO)
                param.addcdiv_(grad, vel.add(_KERAS_EPSILON).sqrt_(), value=-lr)


# -- the shared adapter ------------------------------------------------------------
class _TorchTriplet(TripletRecommender):
    """Shared validation, epoch step, threads and device handling of the torch adapters.

    The training loop itself is :meth:`models.base.TripletRecommender.fit`.
    """

    def _validate_common(self) -> None:
        self._validate_triplet_params(OPTIMIZERS)
        _resolve_device(self.device)

    # Subclasses: build weights, run one batch, report weights.
    def _build(self, num_users: int, num_items: int, generator: torch.Generator) -> None:
        raise NotImplementedError

    def _train_batch(
        self, user_ids: torch.Tensor, pos_item_ids: torch.Tensor, neg_item_ids: torch.Tensor
    ) -> None:
        raise NotImplementedError

    def _weights(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _pair_similarity(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _start_training(self, train, seed: int, features) -> None:
        """Resolve the device and build the weights from a CPU generator seeded by ``seed``."""
        del features  # these models use no side features
        self._device = _resolve_device(self.device)
        # A CPU generator, so that the same seed gives the same weights on any device.
        self._generator = torch.Generator().manual_seed(seed)
        with torch_threads(self.num_threads):
            self._build(train.num_users, train.num_items, self._generator)

    def _epoch_context(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        stack.enter_context(torch_threads(self.num_threads))
        stack.enter_context(torch.no_grad())
        return stack

    def _train_epoch(self, triplets) -> float:
        batch_size = int(self.batch_size)
        users, pos, neg = (
            _index_tensor(ids, self._device)
            for ids in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        )
        self._loss_sum = torch.zeros((), device=self._device)
        for start in range(0, users.shape[0], batch_size):
            end = start + batch_size
            self._train_batch(users[start:end], pos[start:end], neg[start:end])
        num_batches = -(-users.shape[0] // batch_size)
        return float(self._loss_sum) / max(num_batches, 1)

    def _check_weights(self, epoch: int) -> None:
        name = type(self).__name__
        for what, weight in self._weights().items():
            _check_tensor(weight, f"{name} weight {what}")

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Current similarity of each (user, item) pair (the ``hard`` sampler's callback)."""
        users = _index_tensor(user_ids, self._device)
        items = _index_tensor(item_ids, self._device)
        with torch.no_grad():
            return self._pair_similarity(users, items).cpu().numpy()


# -- bilinear --------------------------------------------------------------------------
class TorchBilinear(_TorchTriplet):
    """The notebook's bilinear triplet model in PyTorch.

    A user embedding table and one item table (shared by the positive and the
    negative item) compared by cosine similarity (the notebook's
    ``Dot(axes=1, normalize=True)``) or a plain dot product; margin loss on
    triplets; L2 on both whole tables, Keras style.

    The gradient of the batch objective is written out in closed form. For
    cosine, with ``r_x = 1 / |x|``, ``s_p = cos(u, p)``, ``s_n = cos(u, n)`` and
    ``w = [margin + s_n - s_p > 0] / batch_size``::

        dL/du = w r_u (r_n n - r_p p) - w r_u^2 (s_n - s_p) u
        dL/dp = -w r_u r_p u + w s_p r_p^2 p
        dL/dn =  w r_u r_n u - w s_n r_n^2 n

    plus ``2 l2_reg W`` on every row of each table (the test suite checks this
    against autograd). With ``optimizer="sgd"`` the rows' gradients are
    scattered straight into the tables (``index_add_``), and the L2 term's
    decay ``W <- (1 - 2 lr l2_reg) W`` of every row is kept as one scale
    factor of the tables, folded in at the end of each epoch: the dense SGD
    update, exactly (up to float rounding), at a cost that grows with the
    batch, not with the tables. On CPU that SGD epoch runs in one compiled
    loop (:mod:`models._bilinear_compiled`, numba) rather than some thirty
    tensor operations a batch: the same batches, gradient, order of the
    updates and lazy decay, up to float32 rounding (the tests compare the
    two), about twice as fast (0.39 against 0.84 us a triplet at ML-20M
    shape, ``benchmarks/test_bench_torch.py``). The tables stay torch
    tensors, updated in place; initialisation and scoring are PyTorch's.
    The other optimizers update the whole tables, as Keras does.

    Parameters
    ----------
    latent_dim : int
        Embedding size of users and items.
    similarity : {"cosine", "dot"}
        How a user and an item embedding are compared.
    margin : float
        Margin of the loss ``max(0, margin + sim(u, neg) - sim(u, pos))``.
    l2_reg : float
        Keras L2 factor: ``l2_reg * sum(W ** 2)`` over each whole embedding
        table is added to every batch's loss (0 disables it).
    learning_rate : float
        Optimizer learning rate.
    batch_size : int
        Triplets per optimizer step.
    optimizer : {"sgd", "adam", "adagrad", "rmsprop"}
        Update rule, with Keras's formulas and defaults for everything but the
        learning rate.
    epochs : int
        Passes over the training positives (each with fresh negatives).
    negatives : {"uniform", "uniform-unseen", "popularity", "hard"}
        Strategy of the common sampler.
    negatives_alpha : float
        Popularity exponent for ``negatives="popularity"``.
    hard_candidates : int
        Candidates per triplet for ``negatives="hard"``.
    num_threads : int or None
        ``torch.set_num_threads`` during ``fit`` and ``score`` (restored
        afterwards); None leaves PyTorch's setting alone.
    device : str
        ``"cpu"`` or ``"cuda[:index]"``.

    Notes
    -----
    The defaults are the ``fast`` preset: plain SGD with learning rate 50 on
    batches of 1024 (the loss is a batch mean and cosine gradients scale as
    ``1 / |x|``, so the step is large in absolute terms), uniform negatives
    among the user's unseen items, 8 epochs, one thread. The compiled SGD
    epoch is single-threaded; the torch step's per-batch tensor operations
    are too small to gain from a second thread (on a shared machine,
    per-operation OpenMP barriers with two threads cost milliseconds each),
    so ``num_threads`` matters for scoring and the other optimizers. The ``notebook`` preset is
    64-d cosine, margin 1, L2 1e-6, Adam (1e-3), batch 64, uniform negatives,
    10 epochs.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = (
        "PyTorch port of the notebook's bilinear model (closed-form gradients; "
        "SGD epochs on CPU in a compiled loop)"
    )
    #: SGD applies the L2 decay lazily (one scale factor for the tables, see
    #: :meth:`_train_batch`): the same update, without touching every row per batch.
    #: False applies it eagerly to both whole tables (the reference in tests).
    lazy_decay: ClassVar[bool] = True

    @property
    def fit_scaling(self) -> str:  # type: ignore[override]
        """Why the fit grows faster than the data with a dense optimizer (empty with SGD)."""
        if self.optimizer != "sgd":
            return DENSE_UPDATE_SCALING.format(
                what=f"optimizer {self.optimizer!r} (Keras's, on whole tables)",
                instead="the fast preset's SGD touches only the batch's rows",
            )
        return ""

    def __init__(
        self,
        *,
        latent_dim: int = 64,
        similarity: str = "cosine",
        margin: float = 1.0,
        l2_reg: float = 1e-6,
        learning_rate: float = 50.0,
        batch_size: int = 1024,
        optimizer: str = "sgd",
        epochs: int = 8,
        negatives: str = "uniform-unseen",
        negatives_alpha: float = 0.75,
        hard_candidates: int = 10,
        num_threads: int | None = 1,
        device: str = "cpu",
    ) -> None:
        self.latent_dim = latent_dim
        self.similarity = similarity
        self.margin = margin
        self.l2_reg = l2_reg
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.epochs = epochs
        self.negatives = negatives
        self.negatives_alpha = negatives_alpha
        self.hard_candidates = hard_candidates
        self.num_threads = num_threads
        self.device = device

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._validate_common()
        self._validate_bilinear_params()

    def _build(self, num_users: int, num_items: int, generator: torch.Generator) -> None:
        dim = int(self.latent_dim)
        users = torch.rand(num_users, dim, generator=generator)
        items = torch.rand(num_items, dim, generator=generator)
        self._user_table = users.mul_(2 * _EMBEDDING_INIT).sub_(_EMBEDDING_INIT).to(self._device)
        self._item_table = items.mul_(2 * _EMBEDDING_INIT).sub_(_EMBEDDING_INIT).to(self._device)
        tables = [self._user_table, self._item_table]
        self._optim = _Optimizer(self.optimizer, tables, self.learning_rate)
        self._grads = None if self.optimizer == "sgd" else [torch.empty_like(t) for t in tables]
        # SGD's L2 decay, applied lazily: the true tables are ``_decay_scale`` times
        # the stored ones (see :meth:`_train_batch`); 1.0 outside a training epoch.
        self._decay_scale = 1.0
        self._steps = None  # the compiled epoch's scratch, made on first use

    def _weights(self) -> dict[str, torch.Tensor]:
        return {"user_embedding": self._user_table, "item_embedding": self._item_table}

    def _row_gradients(
        self, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch loss, and ``scale`` times its gradient with respect to each looked-up row.

        Only the data term: the L2 term is handled on whole tables. ``scale``
        is folded into the per-row coefficients (``-learning_rate`` gives SGD's
        step directly), which is cheaper than scaling the rows afterwards.
        """
        margin = float(self.margin)
        cosine = self.similarity == "cosine"
        if cosine:
            inv_u, above_u = _inverse_norms(u)
            inv_p, above_p = _inverse_norms(p)
            inv_n, above_n = _inverse_norms(n)
            sim_pos = torch.linalg.vecdot(u, p).unsqueeze_(1).mul_(inv_u).mul_(inv_p)
            sim_neg = torch.linalg.vecdot(u, n).unsqueeze_(1).mul_(inv_u).mul_(inv_n)
        else:
            sim_pos = torch.linalg.vecdot(u, p).unsqueeze_(1)
            sim_neg = torch.linalg.vecdot(u, n).unsqueeze_(1)
        diff = sim_neg - sim_pos
        hinge = diff + margin
        # scale * d loss / d (sim_neg - sim_pos) for each triplet.
        w = (hinge > 0).to(u.dtype).mul_(scale / u.shape[0])
        loss = hinge.clamp_min_(0).mean()
        if not cosine:
            grad_u = (n - p).mul_(w)
            return loss, grad_u, u * (-w), u * w
        # Rows below the norm cap are scaled by a constant: no projection term.
        a = w * inv_u
        a_n, a_p = a * inv_n, a * inv_p
        grad_u = u * (diff.mul_(a).mul_(inv_u).mul_(above_u).neg_())
        grad_u.addcmul_(n, a_n).addcmul_(p, a_p.neg())
        grad_p = p * (sim_pos.mul_(w).mul_(inv_p).mul_(inv_p).mul_(above_p))
        grad_p.addcmul_(u, a_p.neg_())
        grad_n = n * (sim_neg.mul_(w).mul_(inv_n).mul_(inv_n).mul_(above_n).neg_())
        grad_n.addcmul_(u, a_n)
        return loss, grad_u, grad_p, grad_n

    def _train_batch(
        self, user_ids: torch.Tensor, pos_item_ids: torch.Tensor, neg_item_ids: torch.Tensor
    ) -> None:
        users, items = self._user_table, self._item_table
        u = users.index_select(0, user_ids)
        p = items.index_select(0, pos_item_ids)
        n = items.index_select(0, neg_item_ids)
        l2 = float(self.l2_reg)
        if self._grads is None:
            # Plain SGD: W <- W - lr (2 l2 W + G) = c W - lr G with c = 1 - 2 lr l2,
            # -lr G scattered row by row (index_add_ without ``alpha``: its
            # alpha path is several times slower on CPU).
            lr = float(self.learning_rate)
            decay, lazy = self._sgd_decay()
            if l2 > 0 and lazy:
                # Lazy decay: the true tables are W = s V (V stored, s one scalar
                # shared by both tables, which decay alike). c W - lr G
                # = (c s) (V - lr G / (c s)): scale s by c and scatter the step
                # divided by the new s, so a batch touches only its own rows
                # instead of streaming both whole tables through memory.
                scale = self._decay_scale
                if scale != 1.0:
                    u.mul_(scale)
                    p.mul_(scale)
                    n.mul_(scale)
                scale *= decay
                loss, step_u, step_p, step_n = self._row_gradients(u, p, n, -lr / scale)
                self._decay_scale = scale
            else:
                loss, step_u, step_p, step_n = self._row_gradients(u, p, n, -lr)
                if l2 > 0:
                    users.mul_(decay)
                    items.mul_(decay)
            users.index_add_(0, user_ids, step_u)
            items.index_add_(0, pos_item_ids, step_p)
            items.index_add_(0, neg_item_ids, step_n)
            if abs(self._decay_scale) < _LAZY_FOLD_BELOW:
                self._fold_decay()
        else:
            loss, grad_u, grad_p, grad_n = self._row_gradients(u, p, n, 1.0)
            grad_users, grad_items = self._grads
            if l2 > 0:
                torch.mul(users, 2 * l2, out=grad_users)
                torch.mul(items, 2 * l2, out=grad_items)
            else:
                grad_users.zero_()
                grad_items.zero_()
            grad_users.index_add_(0, user_ids, grad_u)
            grad_items.index_add_(0, pos_item_ids, grad_p)
            grad_items.index_add_(0, neg_item_ids, grad_n)
            self._optim.step(self._grads)
        self._loss_sum += loss

    def _fold_decay(self) -> None:
        """Multiply the lazy decay scale into the stored tables (then it is 1 again)."""
        if self._decay_scale != 1.0:
            self._user_table.mul_(self._decay_scale)
            self._item_table.mul_(self._decay_scale)
            self._decay_scale = 1.0

    def _train_epoch(self, triplets) -> float:
        # The tables are true (scale folded in) between epochs: the ``hard``
        # sampler, the weight checks and scoring read them directly.
        try:
            if self._uses_compiled_step():
                return self._train_epoch_compiled(triplets)
            return super()._train_epoch(triplets)
        finally:
            self._fold_decay()

    def _sgd_decay(self) -> tuple[float, bool]:
        """SGD's per-batch L2 decay factor ``1 - 2 lr l2_reg`` (1 without L2), and whether
        it is applied lazily (``lazy_decay`` and the factor at least ``_LAZY_MIN_DECAY``)."""
        l2 = float(self.l2_reg)
        decay = 1 - 2 * float(self.learning_rate) * l2 if l2 > 0 else 1.0
        return decay, self.lazy_decay and abs(decay) >= _LAZY_MIN_DECAY

    def _uses_compiled_step(self) -> bool:
        """Whether epochs run in :mod:`models._bilinear_compiled` (SGD, lazy decay, CPU)."""
        return (
            _COMPILED
            and self._grads is None
            and self._device.type == "cpu"
            and self._sgd_decay()[1]
        )

    def warm_up(self) -> None:
        """Load the compiled SGD epoch (:func:`models._bilinear_compiled.warm_up`) before timing."""
        if _COMPILED and self.optimizer == "sgd":
            from models import _bilinear_compiled

            _bilinear_compiled.warm_up()

    def _train_epoch_compiled(self, triplets) -> float:
        """One SGD epoch in the compiled loop: the torch step's batches and update.

        See :func:`models._bilinear_compiled.sgd_epoch`. The tables are updated
        in place through NumPy views of their tensors; the lazy decay scale
        carries over in ``_decay_scale`` and is folded in by the caller.
        """
        from models import _bilinear_compiled as compiled

        ids = tuple(
            np.ascontiguousarray(values, dtype=np.int64)
            for values in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        )
        batch_size = int(self.batch_size)
        users, items = self._user_table.numpy(), self._item_table.numpy()
        if self._steps is None:
            self._steps = np.zeros((3, batch_size, users.shape[1]), dtype=np.float32)
        decay, _ = self._sgd_decay()
        model = (self.similarity == "cosine", float(self.margin), _NORM_EPSILON)
        rule = (float(self.learning_rate), decay, float(self._decay_scale), _LAZY_FOLD_BELOW)
        loss, batches, self._decay_scale = compiled.sgd_epoch(
            users, items, ids, batch_size, model, rule, self._steps, compiled.PREFETCH_AHEAD
        )
        return loss / max(batches, 1)

    def _rows(self, table: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``index`` of ``table`` (all when None), L2-normalised for cosine.

        Rows are normalised one by one, so normalising only the rows a call
        needs gives the same values as normalising the whole table first.
        """
        rows = table if index is None else table.index_select(0, index)
        return _normalize(rows) if self.similarity == "cosine" else rows

    def _pair_similarity(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        users = self._rows(self._user_table, user_ids)
        return torch.linalg.vecdot(users, self._rows(self._item_table, item_ids))

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned user and item tables (raw, not normalised), float32 numpy copies.

        Returns
        -------
        users : numpy.ndarray of float32, shape (num_users, latent_dim)
        items : numpy.ndarray of float32, shape (num_items, latent_dim)
        """
        self._check_fitted()
        return self._user_table.cpu().numpy().copy(), self._item_table.cpu().numpy().copy()

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Similarity of every item for each user: one ``(n x d) @ (d x items)`` product.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray of float32, shape (n, num_items)
            Cosine similarities (or dot products), C-contiguous.
        """
        user_ids = self._check_user_ids(user_ids)
        with torch_threads(self.num_threads), torch.no_grad():
            index = _index_tensor(user_ids, self._device)
            # Only the block's user rows: normalising the whole user table per
            # block cost more than the product itself at ML-20M shape.
            scores = self._rows(self._user_table, index) @ self._rows(self._item_table).T
            return self._finish_scores(scores.cpu().numpy())


# -- deep ------------------------------------------------------------------------
class TorchDeep(_TorchTriplet):
    """The notebook's deep triplet model in PyTorch (the exercise's solution).

    User (``user_dim``) and item (``item_dim``) embeddings are concatenated and
    fed to an MLP: dropout, then ``n_hidden`` ReLU layers of ``hidden_size``
    units each followed by dropout, then one ReLU unit whose output is the
    similarity. The positive and the negative pair get independent dropout
    masks. Margin loss on (positive, negative) pairs; Keras-style L2 on the
    embedding tables and the dense kernels (not the biases).

    Parameters
    ----------
    user_dim, item_dim : int
        Embedding sizes.
    n_hidden : int
        Number of hidden layers (0: the output unit sees the embeddings).
    hidden_size : int
        Units per hidden layer.
    dropout : float
        Dropout rate in [0, 1) on the MLP input and after each hidden layer
        (inverted dropout: kept units are scaled by ``1 / (1 - dropout)``).
    margin, l2_reg, learning_rate, batch_size, optimizer, epochs, negatives, \
negatives_alpha, hard_candidates, num_threads, device
        As in :class:`TorchBilinear` (``l2_reg`` also covers the dense kernels).

    Notes
    -----
    The defaults are the ``fast`` preset: the same network trained with Adam
    (2e-3) on batches of 256, uniform negatives among the user's unseen
    items, 20 epochs, one thread. A step costs about the same at any batch
    size up to a few hundred (fixed per-step costs: autograd, the dense Adam
    update), but this model first learns popularity and needs many updates
    to personalise: larger batches or learning rates above about 2e-3
    reached a lower AUC in the same time. The ``notebook`` preset is the notebook solution's 32/64-d
    embeddings, one hidden layer of 128, dropout 0.1, no L2, Adam (1e-3),
    batch 64, uniform negatives, 20 epochs.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = "PyTorch port of the notebook's deep MLP model"
    fit_scaling: ClassVar[str] = DENSE_UPDATE_SCALING.format(
        what="the optimizer (autograd, whole tables)", instead="no sparse update is offered"
    )

    def __init__(
        self,
        *,
        user_dim: int = 32,
        item_dim: int = 64,
        n_hidden: int = 1,
        hidden_size: int = 128,
        dropout: float = 0.1,
        margin: float = 1.0,
        l2_reg: float = 0.0,
        learning_rate: float = 0.002,
        batch_size: int = 256,
        optimizer: str = "adam",
        epochs: int = 20,
        negatives: str = "uniform-unseen",
        negatives_alpha: float = 0.75,
        hard_candidates: int = 10,
        num_threads: int | None = 1,
        device: str = "cpu",
    ) -> None:
        self.user_dim = user_dim
        self.item_dim = item_dim
        self.n_hidden = n_hidden
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.margin = margin
        self.l2_reg = l2_reg
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.epochs = epochs
        self.negatives = negatives
        self.negatives_alpha = negatives_alpha
        self.hard_candidates = hard_candidates
        self.num_threads = num_threads
        self.device = device

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._validate_common()
        self._validate_mlp_params()

    def _build(self, num_users: int, num_items: int, generator: torch.Generator) -> None:
        def uniform(shape: tuple[int, int], limit: float) -> torch.Tensor:
            weight = torch.rand(*shape, generator=generator).mul_(2 * limit).sub_(limit)
            return weight.to(self._device).requires_grad_()

        self._user_table = uniform((num_users, int(self.user_dim)), _EMBEDDING_INIT)
        self._item_table = uniform((num_items, int(self.item_dim)), _EMBEDDING_INIT)
        self._kernels: list[torch.Tensor] = []
        self._biases: list[torch.Tensor] = []
        width = int(self.user_dim) + int(self.item_dim)
        for out in [int(self.hidden_size)] * int(self.n_hidden) + [1]:
            # Keras's glorot_uniform: limit sqrt(6 / (fan_in + fan_out)); zero bias.
            self._kernels.append(uniform((width, out), math.sqrt(6.0 / (width + out))))
            self._biases.append(torch.zeros(out, device=self._device, requires_grad=True))
            width = out
        self._params = [self._user_table, self._item_table, *self._kernels, *self._biases]
        self._regularised = [self._user_table, self._item_table, *self._kernels]
        self._optim = _Optimizer(self.optimizer, self._params, self.learning_rate)

    def _weights(self) -> dict[str, torch.Tensor]:
        weights = {"user_embedding": self._user_table, "item_embedding": self._item_table}
        for layer, (kernel, bias) in enumerate(zip(self._kernels, self._biases)):
            weights[f"dense_{layer}.kernel"] = kernel
            weights[f"dense_{layer}.bias"] = bias
        return weights

    def _dropout_scales(self, rows: int) -> list[torch.Tensor]:
        """Inverted-dropout multipliers (0 or ``1 / (1 - rate)``) for every dropout site.

        One ``(rows, width)`` tensor per site: the MLP input, then each hidden
        layer. The uniform draws come from the fit's CPU generator, 16 bits at
        a time (a 64-bit draw makes four), so the rate is applied with a
        resolution of 2**-16 (|rate - requested| <= 7.7e-6); the scale uses
        that exact rate, so kept units are unbiased.
        """
        widths = [int(self.user_dim) + int(self.item_dim)]
        widths += [int(self.hidden_size)] * int(self.n_hidden)
        total = rows * sum(widths)
        words = torch.randint(
            -(2**63), 2**63 - 1, (-(-total // 4),), dtype=torch.int64, generator=self._generator
        )
        draws = words.view(torch.int16)[:total].to(self._device)
        dropped = round(float(self.dropout) * 65536)
        keep = draws >= dropped - 32768
        scales = keep.to(torch.float32).mul_(65536.0 / (65536 - dropped))
        out, start = [], 0
        for width in widths:
            out.append(scales[start : start + rows * width].view(rows, width))
            start += rows * width
        return out

    def _mlp(self, pairs: torch.Tensor, scales: list[torch.Tensor] | None) -> torch.Tensor:
        """The MLP on concatenated (user, item) embeddings, shape ``(batch,)``.

        ``scales`` (training only) are the dropout multipliers of
        :meth:`_dropout_scales`; None runs the MLP in inference mode.
        """
        x = pairs if scales is None else pairs * scales[0]
        last = len(self._kernels) - 1
        for layer, (kernel, bias) in enumerate(zip(self._kernels, self._biases)):
            x = torch.relu(torch.addmm(bias, x, kernel))
            if scales is not None and layer < last:
                x = x * scales[layer + 1]
        return x.squeeze(1)

    def _similarity(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Inference-mode similarity of each (user, item) pair, shape ``(batch,)``."""
        pairs = torch.cat(
            [
                self._user_table.index_select(0, user_ids),
                self._item_table.index_select(0, item_ids),
            ],
            dim=1,
        )
        return self._mlp(pairs, None)

    def _train_batch(
        self, user_ids: torch.Tensor, pos_item_ids: torch.Tensor, neg_item_ids: torch.Tensor
    ) -> None:
        rows = user_ids.shape[0]
        # Positive and negative pairs go through the MLP as one stacked batch
        # (with independent dropout masks), then split.
        scales = self._dropout_scales(2 * rows) if self.dropout > 0 else None
        with torch.enable_grad():
            users = self._user_table.index_select(0, user_ids)
            items = self._item_table.index_select(0, torch.cat([pos_item_ids, neg_item_ids]))
            pairs = torch.cat([torch.cat([users, users]), items], dim=1)
            sims = self._mlp(pairs, scales)
            sim_pos, sim_neg = sims[:rows], sims[rows:]
            loss = torch.relu(sim_neg - sim_pos + float(self.margin)).mean()
            objective = loss
            if self.l2_reg > 0:
                penalty = sum(w.square().sum() for w in self._regularised)
                objective = loss + float(self.l2_reg) * penalty
            grads = torch.autograd.grad(objective, self._params)
        self._loss_sum += loss.detach()
        self._optim.step(list(grads))

    def _pair_similarity(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        return self._similarity(user_ids, item_ids)

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """The MLP's similarity for every (user, item) pair of the block.

        The first dense layer is split into a user part and an item part, so
        its pre-activation is ``U W_u + (I W_i + b)``: computed once per user
        and once per item, then broadcast over the pairs of a block of users.
        The remaining layers run on all pairs of the block at once; blocks
        hold at most about four million activations.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray of float32, shape (n, num_items)
        """
        user_ids = self._check_user_ids(user_ids)
        out = np.empty((user_ids.shape[0], self._num_items), dtype=np.float32)
        first, rest = self._kernels[0], list(zip(self._kernels[1:], self._biases[1:]))
        width = first.shape[1]
        block = max(1, _SCORE_BLOCK_CELLS // (self._num_items * width))
        user_dim = int(self.user_dim)
        with torch_threads(self.num_threads), torch.no_grad():
            index = _index_tensor(user_ids, self._device)
            item_part = torch.addmm(self._biases[0], self._item_table, first[user_dim:])
            user_part = self._user_table.index_select(0, index) @ first[:user_dim]
            for start in range(0, user_ids.shape[0], block):
                pre = user_part[start : start + block, None, :] + item_part[None, :, :]
                x = torch.relu(pre).reshape(-1, width)
                for kernel, bias in rest:
                    x = torch.relu(torch.addmm(bias, x, kernel))
                out[start : start + block] = x.reshape(-1, self._num_items).cpu().numpy()
        return self._finish_scores(out)
