"""The notebook's triplet models (bilinear and deep MLP) as Keras 3 adapters on TensorFlow.

Both models are trained on (user, positive item, negative item) triplets from
the common :class:`bench.sampler.NegativeSampler` with the margin loss
``max(0, margin + sim(u, neg) - sim(u, pos))`` averaged over a batch, plus L2
penalties. By default (``regularization="tables"``, the notebook's) these are
the Keras regularizers, summed over whole weight tables as Keras does, which
makes every embedding gradient dense. The bilinear model can instead penalise
only the rows a batch looks up (``regularization="batch-rows"``, as LightFM
does), so its gradients stay sparse ``tf.IndexedSlices``; with
``optimizer="lazy-adam"`` (Adam whose moments and weights move on the touched
rows only) a step then costs time in proportion to the batch, not to the
tables. Two training loops compute the objective:

* ``trainer="keras-fit"``: Keras's own ``Model.fit`` called one epoch at a time
  with an identity loss, as the notebook does (slow at batch 64: Python and
  ``tf.data`` overhead per step);
* ``trainer="compiled"``: one ``tf.function`` per fit that runs a whole epoch
  of padded numpy batches in a graph loop (its step optionally XLA-compiled),
  so an epoch costs a single Python call and the graph is built once per fit.
  Adam runs as TensorFlow's fused kernel, which differs from Keras 3's Adam
  only on repeated ids within a batch of a sparse gradient (see ``_FusedAdam``);
  ``lazy-adam`` (``_LazyAdam``) and ``batch-rows`` need this trainer.

Scoring never calls ``predict`` per user: the bilinear model multiplies its
(normalised) embedding tables, the deep model evaluates its MLP on every
(user, item) pair of a block of users in one XLA-compiled call.

TensorFlow and Keras are imported by :mod:`models._keras_nets` (the networks, optimizers
and trainers) and nowhere else in rsbench, and only when a model is fitted: making and
checking a model here (what the driver of a benchmark does) imports neither.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.interactions import Interactions
from bench.sampler import Triplets
from models.base import (
    DENSE_UPDATE_SCALING,
    TripletRecommender,
    check_finite,
)

if TYPE_CHECKING:
    from models._keras_nets import _TripletNet

__all__ = ["KerasBilinear", "KerasDeep"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "lazy-adam", "adagrad", "rmsprop", "sgd")
TRAINERS = ("keras-fit", "compiled")
#: Where the L2 penalty applies: whole tables (Keras regularizers, the notebook's)
#: or the rows each batch looks up (KerasBilinear only).
REGULARIZATIONS = ("tables", "batch-rows")

# Keras's L2 normalisation caps 1 / norm at 1 / epsilon (keras.ops.normalize).
_NORM_EPSILON = 1e-7
# Triplets fed to the compiled trainer per call (bounds the padded copies and masks).
_CHUNK_TRIPLETS = 262_144
# Deep scoring: users per compiled block, and the cap on (users x items x hidden)
# activations a block of a deeper MLP may materialise.
_SCORE_BLOCK_USERS = 128
_SCORE_BLOCK_CELLS = 4_000_000
# Pairs per call of the deep model's compiled pair scorer (hard negatives).
_PAIR_CHUNK = 65_536


def _nets() -> Any:
    """:mod:`models._keras_nets`, imported (with TensorFlow) on first use."""
    from models import _keras_nets

    return _keras_nets


class _KerasTriplet(TripletRecommender):
    """Validation, network set-up and epoch step shared by the two Keras adapters.

    The training loop itself is :meth:`models.base.TripletRecommender.fit`.
    """

    def _validate_common(self) -> None:
        self._validate_triplet_params(OPTIMIZERS)
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; known: {', '.join(TRAINERS)}")
        if self.optimizer == "lazy-adam" and self.trainer != "compiled":
            raise ValueError(
                f"optimizer='lazy-adam' needs trainer='compiled' (Keras has no lazy Adam), "
                f"got trainer={self.trainer!r}"
            )
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be True or False, got {self.jit_compile!r}")

    def _seed_count(self) -> int:
        """How many framework seeds :meth:`_build_net` consumes."""
        return 2  # the two embedding tables

    def _build_net(self, num_users: int, num_items: int, seeds: np.ndarray) -> _TripletNet:
        raise NotImplementedError

    def _start_training(self, train: Interactions, seed: int, features: Any) -> None:
        """Build the network and the chosen trainer; ``seed`` seeds every framework draw."""
        del features  # these models use no side features
        nets = _nets()
        nets._configure_threads(self.num_threads)
        # One draw from rng seeds everything framework-side: the Keras
        # initializers and dropout layers, and the compiled trainer's masks.
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        seeds = init_seq.generate_state(self._seed_count()) % (2**31 - 1)
        self._net = self._build_net(train.num_users, train.num_items, seeds)
        optimizer = nets._make_optimizer(self.optimizer, self.learning_rate)
        if self.trainer == "compiled":
            # PCG64 explicitly: the trainer uses its raw 64-bit outputs as random bits.
            dropout_rng = np.random.Generator(np.random.PCG64(dropout_seq))
            self._trainer = nets._CompiledTrainer(
                self._net,
                optimizer,
                self.batch_size,
                self.jit_compile,
                dropout_rng,
                lazy=self.optimizer == "lazy-adam",
            )
        else:
            self._trainer = nets._KerasFitTrainer(self._net, optimizer, self.batch_size)

    def _train_epoch(self, triplets: Triplets) -> float:
        return self._trainer.run_epoch(triplets)

    def _end_training(self) -> None:
        del self._trainer  # its compiled graphs are not needed for scoring

    def _check_weights(self, epoch: int) -> None:
        for variable in self._net.trainable_variables:
            where = f"{type(self).__name__} weight {variable.path} after epoch {epoch}"
            check_finite(variable.numpy(), where)

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Current similarity of each (user, item) pair (for the ``hard`` sampler), float32."""
        raise NotImplementedError


class KerasBilinear(_KerasTriplet):
    """The notebook's bilinear triplet model in Keras 3.

    A user embedding and one item embedding table (shared by the positive and
    the negative item), compared by cosine similarity (the value of Keras's
    ``Dot(axes=1, normalize=True)``, the notebook's choice, computed so that
    its gradient stays finite at a zero vector) or a plain dot product; margin
    loss on triplets; L2 penalties on both tables (whole tables, as the
    notebook's Keras regularizers, or only the rows each batch looks up).

    Parameters
    ----------
    latent_dim : int
        Embedding size of users and items.
    similarity : {"cosine", "dot"}
        How a user and an item embedding are compared.
    margin : float
        Margin of the loss ``max(0, margin + sim(u, neg) - sim(u, pos))``.
    l2_reg : float
        L2 factor on the embeddings (0 disables it); ``regularization`` says
        which rows it applies to.
    regularization : {"tables", "batch-rows"}
        ``"tables"`` (the notebook's): Keras L2 regularizers, ``l2_reg *
        sum(W ** 2)`` over each whole table added to every batch's loss, so
        every embedding gradient is dense. ``"batch-rows"`` (as LightFM):
        ``l2_reg`` times the squared norms of the rows the batch looks up,
        counted per occurrence (each triplet's user row, positive item row
        and negative item row once each, summed over the batch), so the
        gradients stay sparse ``tf.IndexedSlices`` and, with
        ``optimizer="lazy-adam"``, a step costs time in proportion to the
        batch instead of the tables. Needs ``trainer="compiled"``.
    learning_rate : float
        Optimizer learning rate.
    batch_size : int
        Triplets per optimizer step.
    optimizer : {"adam", "lazy-adam", "adagrad", "rmsprop", "sgd"}
        Keras optimizer, with Keras's defaults for everything but the learning
        rate. ``"lazy-adam"``: Adam with Keras's constants that updates the
        moments and weights of only the rows a sparse gradient touches
        (untouched rows' moments do not decay; see ``_LazyAdam``); on dense
        gradients it is plain Adam. Needs ``trainer="compiled"``.
    epochs : int
        Passes over the training positives (each with fresh negatives).
    negatives : {"uniform", "uniform-unseen", "popularity", "hard"}
        Strategy of the common sampler.
    negatives_alpha : float
        Popularity exponent for ``negatives="popularity"``.
    hard_candidates : int
        Candidates per triplet for ``negatives="hard"``.
    trainer : {"compiled", "keras-fit"}
        Training loop: a whole-epoch ``tf.function`` or Keras's ``Model.fit``
        (the notebook's loop); both optimise the same objective.
    jit_compile : bool
        XLA-compile the ``compiled`` trainer's step (single-threaded on CPU
        and about a second of compilation per fit: off in the presets).
    num_threads : int or None
        TensorFlow intra-op threads (None: TensorFlow's default, one per core).
        TensorFlow fixes its thread pools when its runtime starts, so this is
        honoured only by the first fit in a process that starts it; a later,
        different request is logged and ignored.

    Notes
    -----
    The defaults are the ``fast`` preset except ``regularization`` and
    ``optimizer``, which default to the notebook's whole-table L2 and Adam
    (what ``trainer="keras-fit"`` supports). The ``fast`` preset is the
    notebook's model trained with batches of 1024 by the compiled trainer,
    with ``regularization="batch-rows"`` and ``optimizer="lazy-adam"`` (see
    the registry for its learning rate and epochs): with whole-table L2 and
    Adam, every step updated both full tables, which cost minutes per epoch at
    ML-20M size. The ``notebook`` preset is 64-d cosine, margin 1, L2 1e-6
    over the whole tables, Adam (learning rate 1e-3), batch 64, uniform
    negatives, 10 epochs, ``trainer="keras-fit"``. Both presets ask for one
    intra-op thread: on a
    small shared machine TensorFlow's default pools (one thread per core for
    intra-op *and* inter-op work) oversubscribe the cores and both loops run
    slower; the graph's independent branches still run in parallel.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = "Keras 3 (TensorFlow backend) port of the notebook's bilinear model"

    @property
    def fit_scaling(self) -> str:  # type: ignore[override]
        """Why the fit grows faster than the data unless the update is sparse (empty then)."""
        if self.optimizer == "lazy-adam" and self.regularization == "batch-rows":
            return ""
        return DENSE_UPDATE_SCALING.format(
            what=f"optimizer {self.optimizer!r} with {self.regularization!r} L2",
            instead="the fast preset (lazy-adam, batch-rows L2) touches only the batch's rows",
        )

    def __init__(
        self,
        *,
        latent_dim: int = 64,
        similarity: str = "cosine",
        margin: float = 1.0,
        l2_reg: float = 1e-6,
        regularization: str = "tables",
        learning_rate: float = 0.01,
        batch_size: int = 1024,
        optimizer: str = "adam",
        epochs: int = 12,
        negatives: str = "uniform",
        negatives_alpha: float = 0.75,
        hard_candidates: int = 10,
        trainer: str = "compiled",
        jit_compile: bool = False,
        num_threads: int | None = 1,
    ) -> None:
        self.latent_dim = latent_dim
        self.similarity = similarity
        self.margin = margin
        self.l2_reg = l2_reg
        self.regularization = regularization
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.epochs = epochs
        self.negatives = negatives
        self.negatives_alpha = negatives_alpha
        self.hard_candidates = hard_candidates
        self.trainer = trainer
        self.jit_compile = jit_compile
        self.num_threads = num_threads

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._validate_common()
        self._validate_bilinear_params()
        if self.regularization not in REGULARIZATIONS:
            raise ValueError(
                f"unknown regularization {self.regularization!r}; "
                f"known: {', '.join(REGULARIZATIONS)}"
            )
        if self.regularization == "batch-rows" and self.trainer != "compiled":
            raise ValueError(
                f"regularization='batch-rows' needs trainer='compiled' (Model.fit adds "
                f"only Keras's whole-table penalties), got trainer={self.trainer!r}"
            )

    def _build_net(self, num_users: int, num_items: int, seeds: np.ndarray) -> _TripletNet:
        net = _nets()._BilinearNet(
            num_users,
            num_items,
            latent_dim=self.latent_dim,
            cosine=self.similarity == "cosine",
            margin=self.margin,
            l2_reg=self.l2_reg,
            seeds=seeds,
            regularization=self.regularization,
        )
        net.build_all()
        return net

    def _embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """User and item tables as float32 numpy, L2-normalised rows for cosine."""
        users = self._net.user_embedding.embeddings.numpy()
        items = self._net.item_embedding.embeddings.numpy()
        if self.similarity == "cosine":
            users, items = _normalize_rows(users), _normalize_rows(items)
        return users, items

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        users, items = self._embeddings()
        return np.einsum("ij,ij->i", users[user_ids], items[item_ids])

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Similarity of every item for each user: one ``(users x d) @ (d x items)`` product.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray of float32, shape (n, num_items)
            Cosine similarities (or dot products), C-contiguous.
        """
        user_ids = self._check_user_ids(user_ids)
        users, items = self._embeddings()
        return self._finish_scores(users[user_ids] @ items.T)


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`_l2_normalize` (float32 in, float32 out)."""
    square_sum = np.einsum("ij,ij->i", matrix, matrix)
    inv_norm = 1.0 / np.sqrt(np.maximum(square_sum, np.float32(_NORM_EPSILON**2)))
    return (matrix * inv_norm[:, None]).astype(np.float32, copy=False)


class KerasDeep(_KerasTriplet):
    """The notebook's deep triplet model in Keras 3 (the exercise's solution).

    User (``user_dim``) and item (``item_dim``) embeddings are concatenated and
    fed to an MLP: dropout, then ``n_hidden`` ReLU layers of ``hidden_size``
    units each followed by dropout, then one ReLU unit whose output is the
    similarity. Margin loss on (positive, negative) pairs; Keras L2 on the
    embeddings and the dense kernels.

    Parameters
    ----------
    user_dim, item_dim : int
        Embedding sizes.
    n_hidden : int
        Number of hidden layers (0: the output unit sees the embeddings).
    hidden_size : int
        Units per hidden layer.
    dropout : float
        Dropout rate in [0, 1) on the MLP input and after each hidden layer.
    margin, l2_reg, learning_rate, batch_size, optimizer, epochs, negatives, \
negatives_alpha, hard_candidates, trainer, jit_compile, num_threads
        As in :class:`KerasBilinear`.

    Notes
    -----
    The defaults are the ``fast`` preset: the notebook's network trained with
    batches of 256 at learning rate 4e-3 on WARP-style ``hard`` negatives
    (with uniform negatives this model needs about twice the epochs) for 10
    epochs, by the compiled trainer, without dropout. Dropout acts in
    training only, so the scoring network is the notebook's; on ML-100K it
    bought no AUC in 10 epochs (mean 0.917 with and without it over seeds
    0-3) and its masks cost a quarter of every epoch. The ``notebook``
    preset is the notebook solution's 32/64-d embeddings, one hidden layer
    of 128, dropout 0.1, no L2, Adam (1e-3), batch 64, uniform negatives,
    20 epochs, ``trainer="keras-fit"``.

    The compiled trainer draws dropout masks with numpy (see
    ``_CompiledTrainer``), ``keras-fit`` with Keras's dropout layers: the
    same distribution, different random streams.
    """

    uses_sampler: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    notes: ClassVar[str] = "Keras 3 (TensorFlow backend) port of the notebook's deep MLP model"
    fit_scaling: ClassVar[str] = DENSE_UPDATE_SCALING.format(
        what="the optimizer (whole tables)",
        instead="no sparse path is offered (its layers read whole tables)",
    )

    def __init__(
        self,
        *,
        user_dim: int = 32,
        item_dim: int = 64,
        n_hidden: int = 1,
        hidden_size: int = 128,
        dropout: float = 0.0,
        margin: float = 1.0,
        l2_reg: float = 0.0,
        learning_rate: float = 0.004,
        batch_size: int = 256,
        optimizer: str = "adam",
        epochs: int = 10,
        negatives: str = "hard",
        negatives_alpha: float = 0.75,
        hard_candidates: int = 10,
        trainer: str = "compiled",
        jit_compile: bool = False,
        num_threads: int | None = 1,
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
        self.trainer = trainer
        self.jit_compile = jit_compile
        self.num_threads = num_threads

    def _seed_count(self) -> int:
        # Two embedding tables, n_hidden + 1 dense kernels, n_hidden + 1 dropouts.
        return 2 + 2 * (self.n_hidden + 1)

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming the first impossible hyperparameter."""
        self._validate_common()
        self._validate_mlp_params()

    def _build_net(self, num_users: int, num_items: int, seeds: np.ndarray) -> _TripletNet:
        net = _nets()._DeepNet(
            num_users,
            num_items,
            user_dim=self.user_dim,
            item_dim=self.item_dim,
            n_hidden=self.n_hidden,
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            margin=self.margin,
            l2_reg=self.l2_reg,
            seeds=seeds,
        )
        net.build_all()
        self._score_fn, self._score_block_users = _nets()._make_deep_scorer(net, num_items)
        self._pair_fn = None  # compiled on first use (only the "hard" sampler needs it)
        return net

    def _score_pairs(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        if self._pair_fn is None:
            self._pair_fn = _nets()._make_deep_pair_scorer(self._net)
        num = len(user_ids)
        size = -(-num // _PAIR_CHUNK) * _PAIR_CHUNK
        users = np.zeros(size, dtype=np.int32)
        items = np.zeros(size, dtype=np.int32)
        users[:num], items[:num] = user_ids, item_ids
        out = np.empty(size, dtype=np.float32)
        for start in range(0, size, _PAIR_CHUNK):
            stop = start + _PAIR_CHUNK
            out[start:stop] = self._pair_fn(users[start:stop], items[start:stop]).numpy()
        return out[:num]

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """The MLP's similarity for every (user, item) pair of the block.

        The first dense layer is split into a user part and an item part, so
        its pre-activation is ``U W_u + I W_i + b``: computed once per user and
        once per item, then broadcast over the pairs of a block of users. The
        remaining layers run on all pairs of the block at once.

        Parameters
        ----------
        user_ids : numpy.ndarray of int, shape (n,)

        Returns
        -------
        numpy.ndarray of float32, shape (n, num_items)
        """
        user_ids = self._check_user_ids(user_ids)
        block = self._score_block_users
        num = user_ids.shape[0]
        padded = np.zeros(-(-num // block) * block, dtype=np.int32)
        padded[:num] = user_ids
        out = np.empty((padded.shape[0], self._num_items), dtype=np.float32)
        for start in range(0, padded.shape[0], block):
            out[start : start + block] = self._score_fn(padded[start : start + block]).numpy()
        return self._finish_scores(out[:num])
