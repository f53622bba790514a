"""The TensorFlow half of :mod:`models.keras_triplet`: networks, optimizers and trainers.

Imported by the Keras adapters when they fit (never when a model is only made
or checked), so that a benchmark's driver does not start TensorFlow.
"""

from __future__ import annotations

import logging
import os
from typing import Any

# Must happen before TensorFlow is imported: silence its C++ info logging and
# pick the TensorFlow backend for Keras 3 (a user's explicit choice wins, and
# is rejected below if it is not TensorFlow).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import tensorflow as tf

from bench.sampler import Triplets
from models.keras_triplet import (
    _CHUNK_TRIPLETS,
    _NORM_EPSILON,
    _PAIR_CHUNK,
    _SCORE_BLOCK_CELLS,
    _SCORE_BLOCK_USERS,
)

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"models.keras_triplet needs the Keras TensorFlow backend, but Keras was configured "
        f"with {keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r})"
    )

logger = logging.getLogger(__name__)


class _OwnRetracingFilter(logging.Filter):
    """Drop TensorFlow's "frequent retracing" warning about this module's functions.

    Every fit builds fresh networks and traces its ``tf.function`` objects once,
    by design; after five fits in one process TensorFlow would warn about it on
    every fit. Warnings about anyone else's functions pass through.
    """

    _OWN = (
        "_CompiledTrainer.__init__.<locals>",
        "_make_deep_scorer.<locals>",
        "_make_deep_pair_scorer.<locals>",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "tf.function retracing" in message and any(name in message for name in self._OWN)
        )


logging.getLogger("tensorflow").addFilter(_OwnRetracingFilter())


# -- TensorFlow runtime set-up ----------------------------------------------
def _configure_threads(num_threads: int | None) -> None:
    """Ask TensorFlow for ``num_threads`` intra-op threads.

    TensorFlow fixes its thread pools when it initialises its runtime; after
    that the setting cannot change, so a differing request is logged and
    ignored rather than raising.
    """
    if num_threads is None:
        return
    threading = tf.config.threading
    current = threading.get_intra_op_parallelism_threads()
    if current == num_threads:
        return
    try:
        threading.set_intra_op_parallelism_threads(num_threads)
    except RuntimeError:
        logger.warning(
            "TensorFlow is already initialised with intra-op threads=%s; "
            "num_threads=%d is ignored in this process",
            current or "default",
            num_threads,
        )


def _make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer with its default settings except ``learning_rate``.

    ``"lazy-adam"`` gives a Keras Adam too: it only carries the hyperparameters
    that the compiled trainer's :class:`_LazyAdam` reads.
    """
    classes = {
        "adam": keras.optimizers.Adam,
        "lazy-adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    return classes[name](learning_rate=learning_rate)


def _identity_loss(y_true: Any, y_pred: Any) -> Any:
    """The notebook's trick: the network already outputs the per-triplet loss."""
    del y_true
    return keras.ops.mean(y_pred)


def _uniform_init(seed: int) -> keras.initializers.Initializer:
    """Keras's default ``Embedding`` initializer (uniform in [-0.05, 0.05]), seeded."""
    return keras.initializers.RandomUniform(-0.05, 0.05, seed=int(seed))


def _l2(l2_reg: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(float(l2_reg)) if l2_reg > 0 else None


# -- the networks -------------------------------------------------------------
class _TripletNet(keras.Model):
    """Shared part: embeddings, the margin loss, the regularised objective."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        user_dim: int,
        item_dim: int,
        margin: float,
        l2_reg: float,
        seeds: np.ndarray,
        name: str,
        regularization: str = "tables",
    ) -> None:
        super().__init__(name=name)
        self.margin = float(margin)
        # "batch-rows": no Keras regularizer (it would make the gradients dense);
        # objective() adds the looked-up rows' penalty instead.
        self.regularization = regularization
        table_l2 = l2_reg if regularization == "tables" else 0.0
        self.row_l2 = float(l2_reg) if regularization == "batch-rows" else 0.0
        self.user_embedding = keras.layers.Embedding(
            num_users,
            user_dim,
            embeddings_initializer=_uniform_init(seeds[0]),
            embeddings_regularizer=_l2(table_l2),
            name="user_embedding",
        )
        # One item table encodes both the positive and the negative item.
        self.item_embedding = keras.layers.Embedding(
            num_items,
            item_dim,
            embeddings_initializer=_uniform_init(seeds[1]),
            embeddings_regularizer=_l2(table_l2),
            name="item_embedding",
        )

    #: Dropout units per (user, item) pair (0: the network has no dropout).
    dropout_width: int = 0
    dropout_rate: float = 0.0

    def similarity(
        self, user_ids: Any, item_ids: Any, training: bool = False, dropout_mask: Any = None
    ) -> Any:
        """Similarity of each (user, item) pair, shape ``(batch,)``.

        ``dropout_mask`` (float, ``(batch, dropout_width)``, entries 0 or
        ``1 / (1 - rate)``) replaces the Keras dropout layers' own draws.
        """
        raise NotImplementedError

    def call(self, inputs: Any, training: bool = False, dropout_masks: Any = None) -> Any:
        """Per-triplet margin loss ``max(0, margin + sim(u, neg) - sim(u, pos))``, ``(batch,)``.

        ``dropout_masks`` (``(batch, 2, dropout_width)``): the positive pair's
        and the negative pair's masks, see :meth:`similarity`.
        """
        user_ids, pos_item_ids, neg_item_ids = inputs
        pos_mask = neg_mask = None
        if dropout_masks is not None:
            pos_mask, neg_mask = dropout_masks[:, 0], dropout_masks[:, 1]
        pos = self.similarity(user_ids, pos_item_ids, training=training, dropout_mask=pos_mask)
        neg = self.similarity(user_ids, neg_item_ids, training=training, dropout_mask=neg_mask)
        return keras.ops.relu(self.margin + neg - pos)

    def objective(self, inputs: Any, mask: Any = None, dropout_masks: Any = None) -> Any:
        """Mean margin loss over the (unmasked) batch plus the L2 penalties.

        ``mask`` (float, ``(batch,)``) marks real rows of a padded batch, so a
        padded final batch has exactly the objective of the short batch.
        """
        losses = self(inputs, training=True, dropout_masks=dropout_masks)
        if mask is None:
            loss = keras.ops.mean(losses)
        else:
            loss = keras.ops.sum(losses * mask) / keras.ops.sum(mask)
        penalties = self.losses
        if penalties:
            loss = loss + keras.ops.sum(keras.ops.stack(penalties))
        if self.row_l2 > 0:
            loss = loss + self.batch_rows_penalty(inputs, mask)
        return loss

    def batch_rows_penalty(self, inputs: Any, mask: Any = None) -> Any:
        """``row_l2`` times the squared norms of the rows a batch looks up, per occurrence.

        Each real triplet contributes its user's row once and the item table's
        positive and negative rows once each: ``row_l2 * sum_b mask_b *
        (|U[u_b]|**2 + |V[p_b]|**2 + |V[n_b]|**2)``, so a row looked up ``c``
        times in the batch gets the gradient ``2 * row_l2 * c * row`` (LightFM
        likewise regularises per training example). The penalty is summed,
        not averaged, over the batch, as Keras adds its whole-table penalty
        to every batch's mean loss. Being a gather, its gradient stays
        ``tf.IndexedSlices`` on the looked-up rows.
        """
        user_ids, pos_item_ids, neg_item_ids = inputs
        square_norms = (
            keras.ops.sum(keras.ops.square(self.lookup(self.user_embedding, user_ids)), axis=-1)
            + keras.ops.sum(keras.ops.square(self.lookup(self.item_embedding, pos_item_ids)), -1)
            + keras.ops.sum(keras.ops.square(self.lookup(self.item_embedding, neg_item_ids)), -1)
        )
        if mask is not None:
            square_norms = square_norms * mask
        return self.row_l2 * keras.ops.sum(square_norms)

    def lookup(self, embedding: keras.layers.Embedding, ids: Any) -> Any:
        """Rows ``ids`` of ``embedding``'s table, ``(batch, dim)``.

        With ``"tables"`` this is the Keras layer's call, as in the notebook.
        With ``"batch-rows"`` it is a gather on the variable itself
        (``ResourceGather``): the Keras layer first reads the whole table as a
        dense tensor, and once a variable has had sparse updates TensorFlow
        copies its whole buffer on every such read (copy-on-read), which would
        cost about as much as the dense update the sparse one replaces. Same
        values, same sparse gradient.
        """
        if self.regularization == "batch-rows":
            return tf.gather(embedding.embeddings.value, ids)
        return embedding(ids)

    def build_all(self) -> None:
        """Create every weight now, in a fixed order, without running the network.

        Keras would build each layer on its first call; building them
        explicitly skips an eager forward pass and Keras's symbolic shape
        inference, a sizeable part of a short fit's cost.
        """
        self.user_embedding.build()
        self.item_embedding.build()
        self.built = True


class _BilinearNet(_TripletNet):
    """User and item embeddings compared by cosine similarity or dot product."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        latent_dim: int,
        cosine: bool,
        margin: float,
        l2_reg: float,
        seeds: np.ndarray,
        regularization: str = "tables",
    ) -> None:
        super().__init__(
            num_users,
            num_items,
            user_dim=latent_dim,
            item_dim=latent_dim,
            margin=margin,
            l2_reg=l2_reg,
            seeds=seeds,
            name="bilinear_triplet",
            regularization=regularization,
        )
        self.cosine = bool(cosine)

    def similarity(
        self, user_ids: Any, item_ids: Any, training: bool = False, dropout_mask: Any = None
    ) -> Any:
        users = self.lookup(self.user_embedding, user_ids)
        items = self.lookup(self.item_embedding, item_ids)
        if self.cosine:
            users, items = _l2_normalize(users), _l2_normalize(items)
        return keras.ops.sum(users * items, axis=-1)


def _l2_normalize(x: Any) -> Any:
    """Rows of ``x`` scaled to unit L2 norm, as ``Dot(axes=1, normalize=True)`` does.

    Keras computes ``x * min(rsqrt(sum(x**2)), 1 / epsilon)``, whose gradient is
    NaN when a row is exactly zero (``0 * inf`` in the backward pass of the
    ``min``). Rows of rarely seen users do shrink towards zero under Adam with
    the L2 penalty, so this takes the ``max`` before the ``rsqrt``: the same
    value everywhere and a finite gradient.
    """
    square_sum = keras.ops.sum(keras.ops.square(x), axis=-1, keepdims=True)
    return x * keras.ops.rsqrt(keras.ops.maximum(square_sum, _NORM_EPSILON**2))


class _DeepNet(_TripletNet):
    """The notebook's deep model: concat(user, item) -> dropout -> MLP -> one ReLU output."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        *,
        user_dim: int,
        item_dim: int,
        n_hidden: int,
        hidden_size: int,
        dropout: float,
        margin: float,
        l2_reg: float,
        seeds: np.ndarray,
    ) -> None:
        super().__init__(
            num_users,
            num_items,
            user_dim=user_dim,
            item_dim=item_dim,
            margin=margin,
            l2_reg=l2_reg,
            seeds=seeds,
            name="deep_triplet",
        )
        seeds = iter(int(s) for s in seeds[2:])
        self.concat = keras.layers.Concatenate()
        self.dropouts = [keras.layers.Dropout(dropout, seed=next(seeds))]
        self.dense = []
        for _ in range(n_hidden):
            self.dense.append(
                keras.layers.Dense(
                    hidden_size,
                    activation="relu",
                    kernel_regularizer=_l2(l2_reg),
                    kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                )
            )
            self.dropouts.append(keras.layers.Dropout(dropout, seed=next(seeds)))
        self.dense.append(
            keras.layers.Dense(
                1,
                activation="relu",
                kernel_regularizer=_l2(l2_reg),
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
            )
        )
        # Widths of the dropout layers' inputs, in order.
        self._dropout_dims = [user_dim + item_dim] + [hidden_size] * n_hidden
        self.dropout_rate = float(dropout)
        self.dropout_width = sum(self._dropout_dims) if dropout > 0 else 0

    def build_all(self) -> None:
        """Create every weight now: the embeddings, then each dense layer in order."""
        super().build_all()
        width = self.user_embedding.output_dim + self.item_embedding.output_dim
        for dense in self.dense:
            dense.build((None, width))
            width = dense.units

    def mlp(self, pairs: Any, training: bool = False, dropout_mask: Any = None) -> Any:
        """The MLP on concatenated (user, item) embeddings, ``(batch, 1)``."""
        x = pairs
        offset = 0
        for dropout, dim, dense in zip(self.dropouts, self._dropout_dims, self.dense):
            if dropout_mask is not None and training:
                x = x * dropout_mask[:, offset : offset + dim]
            else:
                x = dropout(x, training=training)
            offset += dim
            x = dense(x)
        return x

    def similarity(
        self, user_ids: Any, item_ids: Any, training: bool = False, dropout_mask: Any = None
    ) -> Any:
        pairs = self.concat([self.user_embedding(user_ids), self.item_embedding(item_ids)])
        similarity = self.mlp(pairs, training=training, dropout_mask=dropout_mask)
        return keras.ops.reshape(similarity, (-1,))


# -- training loops -------------------------------------------------------------
class _FusedAdam:
    """Adam as TensorFlow's fused ``ResourceApplyAdam`` kernel, with Keras's hyperparameters.

    At step ``t`` the kernel computes ``m += (1 - beta_1) (g - m)``,
    ``v += (1 - beta_2) (g**2 - v)`` and ``w -= lr sqrt(1 - beta_2**t) /
    (1 - beta_1**t) m / (sqrt(v) + epsilon)`` densely over every row of a
    table: the formula and constants of Keras's ``Adam.update_step``, in one
    pass instead of a dozen full-table operations per weight (a large part of
    a step of these small models). The hyperparameters are read from the
    Keras optimizer; the moments and the step counter live here.

    One difference, on sparse gradients only: an embedding's gradient arrives
    as ``tf.IndexedSlices`` with one slice per occurrence of an id in the
    batch. The kernel sums the slices first (``g`` is the true gradient), as
    the notebook's Keras 2, TensorFlow and PyTorch do; Keras 3 squares each
    slice before summing, so its ``v`` gets ``sum(g_i**2)`` for an id seen
    twice in a batch. With dense gradients (any L2 penalty on a table makes
    them dense) both compute the same numbers.
    """

    @staticmethod
    def covers(optimizer: keras.optimizers.Optimizer) -> bool:
        """Whether ``optimizer`` is a plain Keras Adam this class computes exactly.

        Not AdamW or other subclasses, not AMSGrad, and none of Keras's
        optional extras (weight decay, clipping, moving average, a schedule).
        """
        return (
            type(optimizer) is keras.optimizers.Adam
            and not optimizer.amsgrad
            and optimizer.weight_decay is None
            and optimizer.clipnorm is None
            and optimizer.clipvalue is None
            and optimizer.global_clipnorm is None
            and not optimizer.use_ema
            and not isinstance(
                getattr(optimizer, "_learning_rate", None),
                keras.optimizers.schedules.LearningRateSchedule,
            )
        )

    def __init__(self, optimizer: keras.optimizers.Adam, variables: list[Any]) -> None:
        if not self.covers(optimizer):
            raise ValueError(f"_FusedAdam computes plain Adam only, not {optimizer!r}")
        self.learning_rate = float(optimizer.learning_rate)
        self.beta_1 = float(optimizer.beta_1)
        self.beta_2 = float(optimizer.beta_2)
        self.epsilon = float(optimizer.epsilon)
        self.moments = [
            (
                tf.Variable(tf.zeros(v.shape, dtype=v.dtype), trainable=False),
                tf.Variable(tf.zeros(v.shape, dtype=v.dtype), trainable=False),
            )
            for v in variables
        ]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def apply(self, grads: list[Any], variables: list[Any]) -> None:
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        beta_1_power = tf.pow(tf.constant(self.beta_1, tf.float32), step)
        beta_2_power = tf.pow(tf.constant(self.beta_2, tf.float32), step)
        for grad, variable, moments in zip(grads, variables, self.moments):
            self.dense_step(variable, moments, grad, beta_1_power, beta_2_power)

    def dense_step(self, variable, moments, grad, beta_1_power, beta_2_power) -> None:
        """TensorFlow's fused Adam kernel on one variable, at the step the powers give."""
        m, v = moments
        tf.raw_ops.ResourceApplyAdam(
            var=variable.value.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=beta_1_power,
            beta2_power=beta_2_power,
            lr=tf.constant(self.learning_rate, tf.float32),
            beta1=tf.constant(self.beta_1, tf.float32),
            beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32),
            grad=tf.convert_to_tensor(grad),
        )


class _LazyAdam:
    """Adam that moves only the rows of a sparse gradient: ``optimizer="lazy-adam"``.

    Hyperparameters are Keras Adam's (``beta_1``, ``beta_2``, ``epsilon`` at
    their defaults). At step ``t`` (counted over every step, touched or not,
    for the bias correction), a gradient arriving as ``tf.IndexedSlices`` is
    first summed per unique id (``g_r``, as ``_FusedAdam`` does); then, for
    each touched row ``r`` only,

    ``m_r += (1 - beta_1) (g_r - m_r)``,
    ``v_r += (1 - beta_2) (g_r**2 - v_r)``,
    ``w_r -= lr sqrt(1 - beta_2**t) / (1 - beta_1**t) m_r / (sqrt(v_r) + epsilon)``.

    Untouched rows keep their weights and moments bit for bit: their moments
    do not decay, and they take no step on their remaining momentum (the
    "lazy" Adam of TensorFlow Addons' ``LazyAdam`` and PyTorch's
    ``SparseAdam``). So a step costs time in proportion to the batch's
    distinct rows, while plain Adam reads and writes both whole tables and
    their moments on every step. On a dense gradient every row is touched,
    and this is exactly ``_FusedAdam`` (TensorFlow's fused kernel).
    """

    def __init__(self, optimizer: keras.optimizers.Adam, variables: list[Any]) -> None:
        # The Keras Adam only carries the hyperparameters (see _make_optimizer).
        self._dense = _FusedAdam(optimizer, variables)
        self.learning_rate = self._dense.learning_rate
        self.beta_1 = self._dense.beta_1
        self.beta_2 = self._dense.beta_2
        self.epsilon = self._dense.epsilon
        self.moments = self._dense.moments
        self.iterations = self._dense.iterations

    def apply(self, grads: list[Any], variables: list[Any]) -> None:
        sparse = [isinstance(grad, tf.IndexedSlices) for grad in grads]
        if not any(sparse):
            self._dense.apply(grads, variables)
            return
        # One step counter for both kinds of gradient: sparse rows are updated
        # here, dense weights by the fused kernel at the same step t.
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        beta_1_power = tf.pow(tf.constant(self.beta_1, tf.float32), step)
        beta_2_power = tf.pow(tf.constant(self.beta_2, tf.float32), step)
        step_size = self.learning_rate * tf.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
        for grad, variable, (m, v), is_sparse in zip(grads, variables, self.moments, sparse):
            handle = variable.value.handle
            if not is_sparse:
                self._dense.dense_step(variable, (m, v), grad, beta_1_power, beta_2_power)
                continue
            ids, positions = tf.unique(grad.indices)
            g = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(ids)[0])
            m_rows = tf.gather(m, ids)
            v_rows = tf.gather(v, ids)
            m_rows = m_rows + (1.0 - self.beta_1) * (g - m_rows)
            v_rows = v_rows + (1.0 - self.beta_2) * (tf.square(g) - v_rows)
            m.scatter_update(tf.IndexedSlices(m_rows, ids))
            v.scatter_update(tf.IndexedSlices(v_rows, ids))
            delta = step_size * m_rows / (tf.sqrt(v_rows) + self.epsilon)
            tf.raw_ops.ResourceScatterSub(resource=handle, indices=ids, updates=delta)


class _CompiledTrainer:
    """One ``tf.function`` running many fixed-size batches in a graph loop.

    An epoch's triplets are padded to a whole number of batches and reshaped
    to ``(num_batches, batch_size)``; a row mask gives the padded rows weight
    0, so every batch (the short last one included) has exactly the objective
    Keras's ``fit`` would compute for it. The loop is traced (and with
    ``jit_compile`` its step XLA-compiled) once per fit; each epoch then costs
    one call per chunk of ``_CHUNK_TRIPLETS`` triplets (one call on ML-100K).

    Dropout masks are drawn here with numpy from ``dropout_rng`` and fed in:
    TensorFlow's CPU random kernels cost about a third of a deep-model step
    (and are far slower still under XLA). The masks are inverted-dropout
    masks, like Keras's: each unit is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)`` (``rate`` rounded to a multiple of 2**-16).

    ``lazy``: update with :class:`_LazyAdam` (hyperparameters from
    ``optimizer``, a plain Keras Adam) instead of the optimizer itself.
    """

    def __init__(
        self,
        net: _TripletNet,
        optimizer: keras.optimizers.Optimizer,
        batch_size: int,
        jit_compile: bool,
        dropout_rng: np.random.Generator,
        lazy: bool = False,
    ) -> None:
        self.net = net
        self.batch_size = batch_size
        self.dropout_rng = dropout_rng
        variables = net.trainable_variables
        if lazy:
            apply_gradients = _LazyAdam(optimizer, variables).apply
        elif _FusedAdam.covers(optimizer):
            apply_gradients = _FusedAdam(optimizer, variables).apply
        else:
            optimizer.build(variables)
            apply_gradients = optimizer.apply
        width = net.dropout_width
        # A unit is dropped when 16 random bits fall below the threshold: the
        # rate is rounded to a multiple of 2**-16 (0.1 -> 0.1000061), and the
        # bits are raw generator output, several times cheaper than floats.
        self._drop_threshold = round(net.dropout_rate * 2**16)
        keep_scale = 2**16 / (2**16 - self._drop_threshold) if width else 1.0

        def step(users, pos, neg, mask, drop=None):
            masks = None if drop is None else tf.cast(drop, tf.float32) * keep_scale
            with tf.GradientTape() as tape:
                loss = net.objective((users, pos, neg), mask, masks)
            grads = tape.gradient(loss, variables)
            apply_gradients(grads, variables)
            return loss

        if jit_compile:
            # XLA compiles the step only; compiling the whole loop is no faster.
            step = tf.function(step, jit_compile=True, autograph=False)

        def run(users, pos, neg, mask, drop=None):
            def body(b, total):
                loss = step(users[b], pos[b], neg[b], mask[b], None if drop is None else drop[b])
                return b + 1, total + loss

            _, total = tf.while_loop(
                lambda b, total: b < tf.shape(users)[0],
                body,
                (tf.constant(0, dtype=tf.int32), tf.constant(0.0, dtype=tf.float32)),
            )
            return total

        ids = tf.TensorSpec(shape=(None, batch_size), dtype=tf.int32)
        signature = [ids, ids, ids, tf.TensorSpec(shape=(None, batch_size), dtype=tf.float32)]
        if width:
            signature.append(tf.TensorSpec(shape=(None, batch_size, 2, width), dtype=tf.uint8))
        self._run = tf.function(run, input_signature=signature, autograph=False)

    def run_epoch(self, triplets: Triplets) -> float:
        """Train on ``triplets`` in order; return the mean batch objective."""
        n = len(triplets)
        if n == 0:
            return float("nan")
        bs = self.batch_size
        num_batches = -(-n // bs)
        per_call = max(1, _CHUNK_TRIPLETS // bs)
        columns = (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        total = 0.0
        for first in range(0, num_batches, per_call):
            count = min(per_call, num_batches - first)
            start, stop = first * bs, min(n, (first + count) * bs)
            args = []
            for values in columns:
                # Padding repeats the last real triplet (masked out of the loss): a
                # padded slot then looks up a row the batch touches anyway, so the
                # lazy optimizer never counts a row the batch did not use as touched.
                padded = np.full(count * bs, values[stop - 1], dtype=np.int32)
                padded[: stop - start] = values[start:stop]
                args.append(padded.reshape(count, bs))
            mask = np.zeros(count * bs, dtype=np.float32)
            mask[: stop - start] = 1.0
            args.append(mask.reshape(count, bs))
            if self.net.dropout_width:
                args.append(self.keep_masks(count))
            total += float(self._run(*args))
        return total / num_batches

    def keep_masks(self, num_batches: int) -> np.ndarray:
        """Dropout keep masks (1 = keep) for ``num_batches`` batches, uint8.

        Shape ``(num_batches, batch_size, 2, dropout_width)``: per triplet, the
        positive and the negative pair's masks over every dropout layer's
        units. Each raw 64-bit PCG64 output is four independent 16-bit
        uniforms; a unit is dropped when its uniform falls below the threshold.
        """
        shape = (num_batches, self.batch_size, 2, self.net.dropout_width)
        size = int(np.prod(shape))
        bits = self.dropout_rng.bit_generator.random_raw(-(-size // 4)).view(np.uint16)
        keep = bits[:size] >= self._drop_threshold
        return keep.reshape(shape).view(np.uint8)


class _KerasFitTrainer:
    """The notebook's loop: ``Model.fit`` on one epoch of triplets with an identity loss.

    The sampler already shuffles every epoch, so ``fit`` does not shuffle again
    (its shuffle would draw from TensorFlow's global seed, outside ``rng``).
    """

    def __init__(
        self, net: _TripletNet, optimizer: keras.optimizers.Optimizer, batch_size: int
    ) -> None:
        self.net = net
        self.batch_size = batch_size
        # jit_compile=False: Keras's "auto" is False on CPU-only machines, and the
        # notebook's Keras 2 never compiled with XLA.
        net.compile(optimizer=optimizer, loss=_identity_loss, jit_compile=False)

    def run_epoch(self, triplets: Triplets) -> float:
        n = len(triplets)
        if n == 0:
            return float("nan")
        history = self.net.fit(
            x=(triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids),
            y=np.ones(n, dtype=np.float32),
            batch_size=self.batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        return float(history.history["loss"][-1])


# -- the adapters -------------------------------------------------------------------


def _make_deep_pair_scorer(net: _DeepNet) -> Any:
    """An XLA-compiled inference similarity of ``_PAIR_CHUNK`` (user, item) pairs.

    Projects every user and every item through its half of the first dense
    layer once, then gathers, adds and runs the rest of the MLP per pair:
    cheaper than the per-pair concatenation when pairs outnumber users plus
    items, as with the ``hard`` sampler's candidates.
    """
    user_dim = net.user_embedding.output_dim
    first, rest = net.dense[0], net.dense[1:]

    @tf.function(
        jit_compile=True,
        autograph=False,
        input_signature=[tf.TensorSpec((_PAIR_CHUNK,), tf.int32)] * 2,
    )
    def score_pairs(user_ids, item_ids):
        kernel = first.kernel
        users = net.user_embedding.embeddings @ kernel[:user_dim]
        items = net.item_embedding.embeddings @ kernel[user_dim:] + first.bias
        hidden = first.activation(tf.gather(users, user_ids) + tf.gather(items, item_ids))
        for dense in rest:
            hidden = dense(hidden)
        return tf.reshape(hidden, (_PAIR_CHUNK,))

    return score_pairs


def _make_deep_scorer(net: _DeepNet, num_items: int) -> tuple[Any, int]:
    """An XLA-compiled function scoring a fixed-size block of users against every item.

    Returns the function (int32 user ids ``(block,)`` to float32 scores
    ``(block, num_items)``) and ``block``. With at most one hidden layer, XLA
    fuses the broadcast sum, the ReLU and the output unit's dot product, so
    the ``block x items x hidden`` activations are never stored and a block
    can be large; deeper MLPs materialise them, so the block is bounded by
    ``_SCORE_BLOCK_CELLS``.
    """
    user_dim = net.user_embedding.output_dim
    first, rest = net.dense[0], net.dense[1:]
    width = first.units
    if len(rest) <= 1:
        block = _SCORE_BLOCK_USERS
    else:
        block = int(np.clip(_SCORE_BLOCK_CELLS // (num_items * width), 1, _SCORE_BLOCK_USERS))

    @tf.function(
        jit_compile=True, autograph=False, input_signature=[tf.TensorSpec((block,), tf.int32)]
    )
    def score_block(user_ids):
        kernel = first.kernel
        users = tf.gather(net.user_embedding.embeddings, user_ids) @ kernel[:user_dim]
        items = net.item_embedding.embeddings @ kernel[user_dim:] + first.bias
        hidden = first.activation(users[:, None, :] + items[None, :, :])
        for dense in rest:
            hidden = dense(hidden)
        return tf.reshape(hidden, (block, num_items))

    return score_block, block
