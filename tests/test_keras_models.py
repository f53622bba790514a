"""The Keras adapters keras-bilinear and keras-deep: objective, scoring, trainers, real data."""

from __future__ import annotations

import float_bounds
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from bench.interactions import Interactions
from bench.registry import default_registry
from bench.sampler import NegativeSampler, Triplets
from models.base import NotFittedError
from models.keras_triplet import KerasBilinear, KerasDeep

REGISTRY = default_registry()


def _fit(model, train, seed=0, **kwargs):
    return model.fit(train, rng=np.random.default_rng(seed), **kwargs)


def _set_embeddings(model, users, items):
    model._net.user_embedding.embeddings.assign(np.asarray(users, dtype=np.float32))
    model._net.item_embedding.embeddings.assign(np.asarray(items, dtype=np.float32))


def _auc(dataset, model):
    from metrics import Evaluator, summarize

    evaluator = Evaluator(
        dataset.test.to_bool_csr(), dataset.exclusion("train-positives"), ks=(5, 10, 20)
    )
    return summarize(evaluator.evaluate(model))


class _NoTriplets:
    """A sampler that yields an empty epoch: ``fit`` builds the networks and takes no step."""

    def __init__(self, num_items):
        self.num_items = num_items

    def sample(self, rng, *, score_pairs=None):
        empty = np.zeros(0, dtype=np.int32)
        return Triplets(empty, empty, empty)


# -- parameters ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "params", "name"),
    [
        (KerasBilinear, {"latent_dim": 0}, "latent_dim"),
        (KerasBilinear, {"latent_dim": 8.5}, "latent_dim"),
        (KerasBilinear, {"similarity": "euclidean"}, "similarity"),
        (KerasBilinear, {"margin": -0.5}, "margin"),
        (KerasBilinear, {"l2_reg": -1e-6}, "l2_reg"),
        (KerasBilinear, {"learning_rate": 0.0}, "learning_rate"),
        (KerasBilinear, {"batch_size": 0}, "batch_size"),
        (KerasBilinear, {"optimizer": "adamw"}, "optimizer"),
        (KerasBilinear, {"optimizer": "lazy-adam", "trainer": "keras-fit"}, "optimizer"),
        (KerasBilinear, {"regularization": "rows"}, "regularization"),
        (KerasBilinear, {"regularization": None}, "regularization"),
        (KerasBilinear, {"regularization": "batch-rows", "trainer": "keras-fit"}, "regularization"),
        (KerasBilinear, {"negatives": "nearest"}, "negatives"),
        (KerasBilinear, {"negatives_alpha": -1.0}, "negatives_alpha"),
        (KerasBilinear, {"hard_candidates": 0}, "hard_candidates"),
        (KerasBilinear, {"trainer": "eager"}, "trainer"),
        (KerasBilinear, {"jit_compile": "yes"}, "jit_compile"),
        (KerasBilinear, {"num_threads": 0}, "num_threads"),
        (KerasBilinear, {"epochs": 0}, "epochs"),
        (KerasDeep, {"user_dim": -2}, "user_dim"),
        (KerasDeep, {"item_dim": 0}, "item_dim"),
        (KerasDeep, {"n_hidden": -1}, "n_hidden"),
        (KerasDeep, {"hidden_size": 0}, "hidden_size"),
        (KerasDeep, {"dropout": 1.0}, "dropout"),
        (KerasDeep, {"dropout": -0.1}, "dropout"),
        (KerasDeep, {"batch_size": 2.5}, "batch_size"),
    ],
)
def test_impossible_parameters_raise_naming_them(cls, params, name, tiny):
    model = cls(**params)
    assert model.get_params()[name] == params[name]  # stored unchanged, not checked early
    with pytest.raises(ValueError, match=name):
        _fit(model, tiny.train, epochs=1)


def test_bad_arguments_to_fit_raise(tiny):
    model = KerasBilinear(epochs=1)
    with pytest.raises(TypeError, match="Interactions"):
        model.fit(tiny.train.to_csr(), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        model.fit(tiny.train, rng=0)
    other = Interactions([0], [0], num_users=1, num_items=tiny.num_items + 1)
    with pytest.raises(ValueError, match="sampler draws from"):
        _fit(model, tiny.train, sampler=NegativeSampler(other))
    with pytest.raises(NotFittedError):
        model.score(np.array([0]))


def test_presets_are_explicit_and_notebook_is_the_notebook():
    bilinear = REGISTRY.params("keras-bilinear", "notebook")
    assert bilinear == {
        "latent_dim": 64,
        "similarity": "cosine",
        "margin": 1.0,
        "l2_reg": 1e-6,
        "learning_rate": 1e-3,
        "batch_size": 64,
        "optimizer": "adam",
        "epochs": 10,
        "negatives": "uniform",
        "trainer": "keras-fit",
        "num_threads": 1,
    }
    deep = REGISTRY.params("keras-deep", "notebook")
    assert deep == {
        "user_dim": 32,
        "item_dim": 64,
        "n_hidden": 1,
        "hidden_size": 128,
        "dropout": 0.1,
        "margin": 1.0,
        "l2_reg": 0.0,
        "learning_rate": 1e-3,
        "batch_size": 64,
        "optimizer": "adam",
        "epochs": 20,
        "negatives": "uniform",
        "trainer": "keras-fit",
        "num_threads": 1,
    }
    # The class defaults are the fast preset, except the bilinear preset's two scale
    # settings, whose class defaults are the notebook's whole-table L2 and Adam.
    scale_settings = {"regularization": "batch-rows", "optimizer": "lazy-adam"}
    assert {k: KerasBilinear().get_params()[k] for k in scale_settings} == {
        "regularization": "tables",
        "optimizer": "adam",
    }
    for name, cls in (("keras-bilinear", KerasBilinear), ("keras-deep", KerasDeep)):
        fast = REGISTRY.params(name, "fast")
        defaults = {k: cls().get_params()[k] for k in fast}
        if name == "keras-bilinear":
            assert {k: fast[k] for k in scale_settings} == scale_settings
            defaults.update(scale_settings)
        assert defaults == fast


def test_thread_request_after_tensorflow_started_is_logged_not_raised(caplog):
    import tensorflow as tf

    from models._keras_nets import _configure_threads

    tf.constant(1.0) + 1.0  # the runtime is running from here on
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with caplog.at_level("WARNING", logger="models._keras_nets"):
        _configure_threads(current + 3)
    assert "ignored" in caplog.text
    assert tf.config.threading.get_intra_op_parallelism_threads() == current


def test_num_threads_is_applied_in_a_fresh_process():
    import subprocess
    import sys

    code = (
        "import numpy as np, tensorflow as tf\n"
        "from bench.datasets.synthetic import synthetic\n"
        "from models.keras_triplet import KerasBilinear\n"
        "data = synthetic(num_users=20, num_items=30, num_positives=200, seed=1)\n"
        "KerasBilinear(num_threads=1, epochs=1).fit(data.train, rng=np.random.default_rng(0))\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "1"


# -- the objective and the scores, by hand -----------------------------------------------
def _tiny_bilinear(**params):
    train = Interactions([0, 1], [0, 1], num_users=2, num_items=3)
    model = _fit(KerasBilinear(latent_dim=2, epochs=1, **params), train, sampler=_NoTriplets(3))
    _set_embeddings(model, [[3.0, 4.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    return model


def test_bilinear_objective_by_hand():
    model = _tiny_bilinear(margin=0.5, l2_reg=0.1)
    inputs = (np.array([0, 1], np.int32), np.array([0, 1], np.int32), np.array([1, 2], np.int32))
    # cos(u0, i0) = 0.6 and cos(u0, i1) = 0.8: loss max(0, 0.5 + 0.8 - 0.6) = 0.7;
    # cos(u1, i1) = 0 and cos(u1, i2) = -1/sqrt(2): loss 0.
    np.testing.assert_allclose(model._net(inputs).numpy(), [0.7, 0.0], atol=1e-6)
    # L2 over the whole tables: 0.1 * (9 + 16 + 1) + 0.1 * (1 + 4 + 1 + 1) = 3.3.
    np.testing.assert_allclose(float(model._net.objective(inputs)), 0.35 + 3.3, rtol=1e-6)
    mask = np.array([1.0, 0.0], np.float32)  # a padded row does not count
    np.testing.assert_allclose(float(model._net.objective(inputs, mask)), 0.7 + 3.3, rtol=1e-6)


def test_batch_rows_penalty_by_hand():
    import tensorflow as tf

    model = _tiny_bilinear(margin=0.5, l2_reg=0.1, regularization="batch-rows")
    net = model._net
    assert not net.losses  # no Keras whole-table regularizer
    inputs = (np.array([0, 1], np.int32), np.array([0, 1], np.int32), np.array([1, 2], np.int32))
    # Rows looked up, per occurrence: users 0 (9 + 16) and 1 (1); items 0 (1), 1 twice
    # (4 + 4) and 2 (1 + 1): 0.1 * 37 = 3.7, on top of the mean margin loss 0.35.
    np.testing.assert_allclose(float(net.objective(inputs)), 0.35 + 3.7, rtol=1e-6)
    # A padded row adds no penalty: user 0, items 0 and 1 only, 0.1 * (25 + 1 + 4).
    mask = np.array([1.0, 0.0], np.float32)
    np.testing.assert_allclose(float(net.objective(inputs, mask)), 0.7 + 3.0, rtol=1e-6)
    # Its gradient, 2 * l2 * (occurrences) * row, arrives as sparse slices of the
    # looked-up rows only (untouched rows: no slice at all).
    with tf.GradientTape() as tape:
        penalty = net.batch_rows_penalty(inputs)
    user_grad, item_grad = tape.gradient(penalty, [net.user_embedding.embeddings,
                                                   net.item_embedding.embeddings])  # fmt: skip
    assert isinstance(user_grad, tf.IndexedSlices) and isinstance(item_grad, tf.IndexedSlices)
    assert set(item_grad.indices.numpy()) == {0, 1, 2}
    np.testing.assert_allclose(tf.convert_to_tensor(user_grad), [[0.6, 0.8], [0.2, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(
        tf.convert_to_tensor(item_grad), [[0.2, 0.0], [0.0, 0.8], [-0.2, -0.2]], rtol=1e-6
    )
    # ... and so does the whole objective's, on a table with an untouched row.
    model = _tiny_bilinear(l2_reg=0.1, regularization="batch-rows")
    inputs = (np.array([0], np.int32), np.array([0], np.int32), np.array([1], np.int32))
    with tf.GradientTape() as tape:
        loss = model._net.objective(inputs)
    item_grad = tape.gradient(loss, model._net.item_embedding.embeddings)
    assert isinstance(item_grad, tf.IndexedSlices)
    assert 2 not in set(item_grad.indices.numpy())


def test_bilinear_scores_by_hand():
    cosine = _tiny_bilinear().score(np.array([1, 0]))
    np.testing.assert_allclose(
        cosine, [[1.0, 0.0, -(0.5**0.5)], [0.6, 0.8, -0.7 * 2**0.5]], atol=1e-6
    )
    dot = _tiny_bilinear(similarity="dot").score(np.array([0, 1]))
    np.testing.assert_allclose(dot, [[3.0, 8.0, -7.0], [1.0, 0.0, -1.0]], atol=1e-6)
    assert cosine.dtype == np.float32 and cosine.flags.c_contiguous


def test_cosine_gradient_is_finite_for_a_zero_embedding():
    # Keras's Dot(normalize=True) has a NaN gradient at a zero row; ours must not.
    import tensorflow as tf

    model = _tiny_bilinear()
    _set_embeddings(model, [[0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    inputs = (np.array([0, 1], np.int32), np.array([0, 1], np.int32), np.array([1, 2], np.int32))
    with tf.GradientTape() as tape:
        loss = model._net.objective(inputs)
    for grad in tape.gradient(loss, model._net.trainable_variables):
        assert np.isfinite(tf.convert_to_tensor(grad).numpy()).all()
    np.testing.assert_array_equal(model.score(np.array([0])), [[0.0, 0.0, 0.0]])


def _score_tolerance(model, user_ids, item_ids):
    """Largest difference two float32 evaluations of the pairs' scores can show, float64.

    The scorers differ in their kernels (BLAS or XLA matrix products, numpy's einsum,
    Keras's layers; the deep scorers split the first layer's product): each is within
    gamma_n times the score's |.|-computation of the exact value, n the roundings on
    the longest chain (the products' lengths plus a bias and a split sum per layer).
    """
    user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)
    if isinstance(model, KerasBilinear):
        users, items = model._embeddings()  # both scorers use these same float32 arrays
        magnitude = np.abs(users[user_ids].astype(np.float64)) * np.abs(items[item_ids])
        return 2 * float_bounds.gamma(users.shape[1]) * magnitude.sum(axis=1)
    net = model._net
    tables = (net.user_embedding.embeddings.numpy(), net.item_embedding.embeddings.numpy())
    x = np.abs(np.hstack([tables[0][user_ids], tables[1][item_ids]]).astype(np.float64))
    depth = 0
    for dense in net.dense:
        depth += x.shape[1] + 2
        x = x @ np.abs(dense.kernel.numpy()) + np.abs(dense.bias.numpy())
    return 2 * float_bounds.gamma(depth) * x[:, 0]


@pytest.mark.parametrize("n_hidden", [0, 1, 2])
def test_deep_scores_equal_the_network_on_every_pair(n_hidden, tiny):
    model = _fit(
        KerasDeep(
            n_hidden=n_hidden, hidden_size=16, user_dim=4, item_dim=8, batch_size=64, epochs=2
        ),
        tiny.train,
    )
    users = np.array([3, 0, 59, 7])
    scores = model.score(users)
    pair_users = np.repeat(users, tiny.num_items).astype(np.int32)
    pair_items = np.tile(np.arange(tiny.num_items), users.size).astype(np.int32)
    # Brute force through the Keras layers (concatenate, MLP), dropout off.
    expected = model._net.similarity(pair_users, pair_items).numpy().reshape(users.size, -1)
    tolerance = _score_tolerance(model, pair_users, pair_items)
    assert (np.abs(scores - expected).ravel() <= tolerance).all()
    # The hard sampler's pair scorer agrees as well.
    assert (
        np.abs(model._score_pairs(pair_users, pair_items) - expected.ravel()) <= tolerance
    ).all()
    assert (scores >= 0).all()  # the output unit is a ReLU, as in the notebook


def test_deep_dropout_is_on_in_training_and_off_in_scoring(tiny):
    model = _fit(KerasDeep(dropout=0.5, batch_size=64, epochs=1), tiny.train)
    users, items = np.arange(8, dtype=np.int32), np.arange(8, dtype=np.int32)
    net = model._net
    np.testing.assert_array_equal(
        net.similarity(users, items).numpy(), net.similarity(users, items).numpy()
    )
    assert not np.allclose(
        net.similarity(users, items, training=True).numpy(), net.similarity(users, items).numpy()
    )


# -- training --------------------------------------------------------------------------
class _FixedTriplets:
    """A sampler that yields the same triplets every epoch."""

    def __init__(self, triplets, num_items):
        self.triplets = triplets
        self.num_items = num_items

    def sample(self, rng, *, score_pairs=None):
        return self.triplets


# Roundings on the longest chain from the weights to the first step's loss or to one
# gradient entry: cosine (norms and dot, 64 terms each) or MLP (96 + 128 terms) forward,
# the same again backward, plus one entry's sum over its <= 2 x 64 uses in a batch.
_STEP_DEPTH = 512


def _first_step_bounds(model, w0, batch):
    """|.|-computations of a first step from weights ``w0`` on ``batch``, float64.

    Returns ``(loss_bound, grads_abs)``: ``loss_bound`` bounds the first batch loss's
    rounding error in one float32 evaluation; ``grads_abs`` (one array per trainable
    variable) is each gradient entry's sum of |terms|, the same computation with every
    weight, gate and sign replaced by its absolute value (gates <= 1 only shrink it),
    so one float32 evaluation of that entry is within ``gamma(_STEP_DEPTH)`` times it
    (tests/float_bounds.py).
    Also checks that no gate (hinge, ReLU) has its input within rounding of 0, where
    one path could open it and another close it.
    """
    users, pos, neg = batch.user_ids, batch.pos_item_ids, batch.neg_item_ids
    num = users.size
    net, params = model._net, model.get_params()
    margin, l2 = params["margin"], params["l2_reg"]
    signed = [np.asarray(w, np.float64) for w in w0]
    weights = [np.abs(w) for w in signed]
    table_u, table_i = weights[:2]
    grads = [np.zeros_like(w) for w in weights]
    sims, sims_abs = [], []  # per pair: the similarity and its |.|-computation
    if isinstance(model, KerasBilinear):
        assert params["similarity"] == "cosine"
        norm_u = np.linalg.norm(table_u, axis=1, keepdims=True)
        norm_i = np.linalg.norm(table_i, axis=1, keepdims=True)
        unit_u, unit_i = table_u / norm_u, table_i / norm_i
        for items in (pos, neg):
            # d cos(a, b) / d a = (b/|b| - cos a/|a|) / |a|: <= (|b^| + |a^|) / |a| per entry.
            np.add.at(grads[0], users, (unit_i[items] + unit_u[users]) / norm_u[users] / num)
            np.add.at(grads[1], items, (unit_u[users] + unit_i[items]) / norm_i[items] / num)
            sims_abs.append((unit_u[users] * unit_i[items]).sum(axis=1))
            cosine = (signed[0][users] * signed[1][items]).sum(axis=1)
            sims.append(cosine / (norm_u[users, 0] * norm_i[items, 0]))
        if net.regularization == "tables":
            penalty = l2 * ((table_u**2).sum() + (table_i**2).sum())
            penalty_depth = table_u.size + table_i.size + 2
            grads[0] += 2 * l2 * table_u
            grads[1] += 2 * l2 * table_i
        else:  # batch-rows: 2 l2 |row| per use of the row
            rows = [(0, users), (1, pos), (1, neg)]
            penalty = sum(l2 * (weights[k][ids] ** 2).sum() for k, ids in rows)
            penalty_depth = table_u.shape[1] + 3 * num + 2
            for k, ids in rows:
                np.add.at(grads[k], ids, 2 * l2 * weights[k][ids])
    else:
        assert isinstance(model, KerasDeep) and l2 == 0 and len(net.dense) == 2
        kernel_1, bias_1, kernel_2, bias_2 = weights[2:]
        user_dim, width = table_u.shape[1], kernel_1.shape[0]
        to_input = kernel_1 @ kernel_2[:, 0]  # |d s / d x|, the same for every pair
        for items in (pos, neg):
            x = np.hstack([signed[0][users], signed[1][items]])
            hidden = x @ signed[2] + signed[3]
            hidden_abs = np.abs(x) @ kernel_1 + bias_1
            assert (np.abs(hidden) > float_bounds.gamma(width + 1) * hidden_abs).all(), (
                "pick another batch"
            )
            out = np.maximum(hidden, 0) @ signed[4][:, 0] + signed[5][0]
            out_abs = hidden_abs @ kernel_2[:, 0] + bias_2[0]
            assert (np.abs(out) > float_bounds.gamma(width + len(bias_1) + 2) * out_abs).all()
            sims.append(np.maximum(out, 0))
            sims_abs.append(out_abs)
            for k, part in ((0, to_input[:user_dim]), (1, to_input[user_dim:])):
                np.add.at(
                    grads[k], (users, items)[k], np.broadcast_to(part / num, (num, part.size))
                )
            grads[2] += np.outer(np.abs(x).sum(axis=0) / num, kernel_2[:, 0])
            grads[3] += kernel_2[:, 0]
            grads[4] += hidden_abs.sum(axis=0)[:, None] / num
            grads[5] += 1.0
        penalty, penalty_depth = 0.0, 1
    hinge_abs = margin + sims_abs[0] + sims_abs[1]
    assert (np.abs(margin + sims[1] - sims[0]) > float_bounds.gamma(_STEP_DEPTH) * hinge_abs).all()
    loss_bound = (
        float_bounds.gamma(_STEP_DEPTH) * hinge_abs.mean()
        + float_bounds.gamma(penalty_depth) * penalty
    )
    return loss_bound, grads


@pytest.mark.parametrize(
    ("cls", "params", "trainers"),
    [
        (KerasBilinear, {}, ["keras-fit", "compiled"]),
        (KerasBilinear, {"regularization": "batch-rows"}, ["compiled"]),
        (KerasDeep, {"dropout": 0.0}, ["keras-fit", "compiled"]),
    ],
)
def test_trainers_take_the_same_first_step(cls, params, trainers, tiny):
    # Keras's Model.fit (the notebook's loop) and the compiled loop, with and without
    # XLA, optimise the same objective: from the same initial weights, one batch of 50
    # triplets (a partial batch of 64: the compiled loop pads and masks it) gives the
    # same loss and the same SGD step up to rounding. Only one step is compared: each
    # path rounds differently (XLA fuses and reorders sums, and picks its kernels by
    # instruction set), and later steps, hinges and ReLU gates amplify that without a
    # bound. Bounds: a float32 evaluation of the loss or of a gradient entry is within
    # gamma(_STEP_DEPTH) times its |.|-computation of the exact value
    # (_first_step_bounds); SGD's w - lr g adds at most one rounding of the weight per
    # use of its row; two paths differ by at most twice one path's error. That holds
    # while every gate (hinge, ReLU) stays as it is: _first_step_bounds checks that no
    # gate's input lies within rounding of 0 (the weights and ids are fixed, so this
    # batch passes that check on every machine).
    # SGD because its step is linear in the gradient; Adam's first step,
    # lr g / (|g| + 3e-6), can send an entry whose gradient is within rounding of 0
    # anywhere in [-lr, lr]. Adam's own arithmetic on given gradients is compared with
    # float64 in test_fused_adam_is_textbook_adam and test_lazy_adam_matches_its_reference.
    lr = 0.5
    params = {"optimizer": "sgd", "learning_rate": lr, "batch_size": 64, "epochs": 1, **params}
    triplets = NegativeSampler(tiny.train).sample(np.random.default_rng(3))
    batch = Triplets(triplets.user_ids[:50], triplets.pos_item_ids[:50], triplets.neg_item_ids[:50])
    untrained = _fit(cls(**params), tiny.train, sampler=_NoTriplets(tiny.num_items))
    w0 = [w.numpy() for w in untrained._net.trainable_variables]
    steps = {}
    for trainer, jit in [(t, False) for t in trainers] + [("compiled", True)]:
        model = _fit(
            cls(trainer=trainer, jit_compile=jit, **params),
            tiny.train,
            sampler=_FixedTriplets(batch, tiny.num_items),
        )
        steps[trainer, jit] = (
            model.loss_history_[0],
            [w.numpy() for w in model._net.trainable_variables],
        )
    loss_bound, grads_abs = _first_step_bounds(untrained, w0, batch)
    gamma = float_bounds.gamma(_STEP_DEPTH)
    (loss, w1), *others = steps.values()
    for other_loss, other_w1 in others:
        assert abs(other_loss - loss) <= 2 * loss_bound
        for start, end, other_end, g_abs in zip(w0, w1, other_w1, grads_abs):
            tolerance = 2 * gamma * (2 * lr * g_abs + np.abs(start))
            assert (np.abs(other_end - end) <= tolerance).all()
    # ... and that step is far larger than the tolerance.
    moved = max(np.abs(end - start).max() for start, end in zip(w0, w1))
    assert moved > 100 * max(
        (2 * gamma * (2 * lr * g + np.abs(s))).max() for s, g in zip(w0, grads_abs)
    )


# Float32 Adam against these float64 references, rtol=1e-5, atol=1e-6: the gradients
# are the same float32 numbers in both. Per step the float32 kernel rounds the moments
# (absolute error <= 3u max|g|, u = 2**-24), sqrt, the division, beta**t (0.9 itself is
# rounded) and the bias correction; since sqrt(v_hat) >= max|g| / 2 over <= 4 steps,
# m_hat / (sqrt(v_hat) + eps) is within 60u = 3.6e-6 of the float64 value, so a step of
# lr = 0.05 adds <= 1.8e-7 plus one rounding of the weight (u|w|): after 4 steps
# <= 7.2e-7 + 2.4e-7 |w|, inside 1e-6 + 1e-5 |w| in any summation order or with XLA.
def _textbook_adam(weights, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma & Ba's Adam with Keras's epsilon placement, float64, step by step."""
    w = np.asarray(weights, dtype=np.float64).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m += (1 - beta_1) * (g - m)
        v += (1 - beta_2) * (g * g - v)
        w -= lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
    return w


def test_fused_adam_is_textbook_adam():
    import keras
    import tensorflow as tf

    from models._keras_nets import _FusedAdam

    rng = np.random.default_rng(0)
    start = rng.normal(size=(6, 3)).astype(np.float32)
    dense = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]

    def run(optimizer_steps, grads):
        variable = keras.Variable(start)
        optimizer = keras.optimizers.Adam(learning_rate=0.05)
        apply = optimizer_steps(optimizer, [variable])
        for grad in grads:
            apply([grad], [variable])
        return variable.numpy()

    def fused(optimizer, variables):
        adam = _FusedAdam(optimizer, variables)
        step = tf.function(lambda grads: adam.apply(grads, variables), autograph=False)
        return lambda grads, _: step(grads)

    def keras_adam(optimizer, variables):
        optimizer.build(variables)
        return optimizer.apply

    expected = _textbook_adam(start, dense, lr=0.05)
    np.testing.assert_allclose(run(fused, dense), expected, rtol=1e-5, atol=1e-6)
    # On dense gradients Keras's own Adam takes the same steps.
    np.testing.assert_allclose(run(keras_adam, dense), expected, rtol=1e-5, atol=1e-6)
    # A sparse gradient with id 1 twice: the fused kernel sums the slices first.
    slices = [
        tf.IndexedSlices(
            tf.constant(rng.normal(size=(3, 3)), tf.float32),
            tf.constant([1, 4, 1]),
            tf.constant([6, 3]),
        )
        for _ in range(3)
    ]
    summed = [tf.convert_to_tensor(s).numpy() for s in slices]
    assert summed[0][1].any() and not summed[0][0].any()
    expected = _textbook_adam(start, summed, lr=0.05)
    np.testing.assert_allclose(run(fused, slices), expected, rtol=1e-5, atol=1e-6)
    # Keras 3 squares each slice before summing them: a different v for id 1 only.
    keras_sparse = run(keras_adam, slices)
    assert not np.allclose(keras_sparse[1], expected[1], rtol=1e-4)
    np.testing.assert_allclose(
        np.delete(keras_sparse, 1, 0), np.delete(expected, 1, 0), rtol=1e-5, atol=1e-6
    )
    # Only a plain Adam is replaced; anything with extras keeps Keras's own update.
    assert _FusedAdam.covers(keras.optimizers.Adam(1e-3))
    for other in (
        keras.optimizers.Adam(1e-3, amsgrad=True),
        keras.optimizers.Adam(1e-3, clipnorm=1.0),
        keras.optimizers.AdamW(1e-3),
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, 10)),
        keras.optimizers.SGD(0.1),
    ):
        assert not _FusedAdam.covers(other)
    with pytest.raises(ValueError, match="plain Adam only"):
        _FusedAdam(keras.optimizers.Adam(1e-3, amsgrad=True), [])


def _lazy_adam_reference(weights, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Lazy Adam in float64: each step sums a sparse gradient's slices per id, then moves
    the moments and weights of those rows only (bias correction by the global step)."""
    w = np.asarray(weights, dtype=np.float64).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (indices, values) in enumerate(grads, start=1):
        g = np.zeros_like(w)
        np.add.at(g, indices, values)
        rows = np.unique(indices)
        m[rows] += (1 - beta_1) * (g[rows] - m[rows])
        v[rows] += (1 - beta_2) * (g[rows] ** 2 - v[rows])
        step = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w[rows] -= step * m[rows] / (np.sqrt(v[rows]) + epsilon)
    return w


@pytest.mark.parametrize("jit_compile", [False, True])
def test_lazy_adam_matches_its_reference_and_leaves_other_rows_alone(jit_compile):
    import keras
    import tensorflow as tf

    from models._keras_nets import _LazyAdam

    rng = np.random.default_rng(1)
    start = rng.normal(size=(6, 3)).astype(np.float32)
    # Steps touching rows {1, 4} (1 twice), {0, 1}, {4}, {1, 4}: row 0 moves at step 2
    # only, rows 2, 3 and 5 never.
    steps = [[1, 4, 1], [0, 1], [4], [1, 4]]
    grads = [(np.array(ids), rng.normal(size=(len(ids), 3)).astype(np.float32)) for ids in steps]
    dense_start = rng.normal(size=(2, 2)).astype(np.float32)
    dense_grads = [rng.normal(size=(2, 2)).astype(np.float32) for _ in steps]
    table, kernel = keras.Variable(start), keras.Variable(dense_start)
    adam = _LazyAdam(keras.optimizers.Adam(learning_rate=0.05), [table, kernel])
    apply = tf.function(
        lambda grads: adam.apply(grads, [table, kernel]), autograph=False, jit_compile=jit_compile
    )
    after = []
    for (ids, values), dense in zip(grads, dense_grads):
        sparse = tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant([6, 3]))
        apply([sparse, tf.constant(dense)])
        after.append(table.numpy())
    expected = _lazy_adam_reference(start, grads, lr=0.05)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Untouched rows are bit-for-bit the initial ones; row 0 keeps its step-2 value
    # (no momentum step and no decay of its moments while it is not looked up).
    np.testing.assert_array_equal(table.numpy()[[2, 3, 5]], start[[2, 3, 5]])
    assert not np.array_equal(after[1][0], start[0])
    for later in after[2:]:
        np.testing.assert_array_equal(later[0], after[1][0])
    np.testing.assert_array_equal(adam.moments[0][0].numpy()[[2, 3, 5]], 0.0)
    # A dense gradient is plain Adam, at the same step count.
    np.testing.assert_allclose(
        kernel.numpy(), _textbook_adam(dense_start, dense_grads, lr=0.05), rtol=1e-5, atol=1e-6
    )
    # With only dense gradients it is the fused Adam kernel.
    only_dense = keras.Variable(dense_start)
    dense_adam = _LazyAdam(keras.optimizers.Adam(learning_rate=0.05), [only_dense])
    for dense in dense_grads:
        dense_adam.apply([tf.constant(dense)], [only_dense])
    np.testing.assert_allclose(
        only_dense.numpy(), _textbook_adam(dense_start, dense_grads, lr=0.05), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_batch_rows_step_moves_only_the_batch_rows(jit_compile):
    import keras

    from models._keras_nets import _BilinearNet, _CompiledTrainer

    def one_step(regularization, lazy):
        net = _BilinearNet(
            10, 12, latent_dim=4, cosine=True, margin=1.0, l2_reg=1e-3,
            seeds=np.array([3, 4]), regularization=regularization,
        )  # fmt: skip
        net.build_all()
        rng = np.random.Generator(np.random.PCG64(0))
        trainer = _CompiledTrainer(net, keras.optimizers.Adam(0.1), 4, jit_compile, rng, lazy=lazy)
        tables = [t.numpy() for t in net.trainable_variables]
        # Three triplets in a batch of 4: the padded row (user 0, items 0 and 0) is masked.
        trainer.run_epoch(
            Triplets(*(np.array(x, np.int32) for x in ([2, 5, 2], [1, 3, 7], [4, 7, 9])))
        )
        return tables, [t.numpy() for t in net.trainable_variables]

    (users0, items0), (users1, items1) = one_step("batch-rows", lazy=True)
    touched_users, touched_items = [2, 5], [1, 3, 4, 7, 9]
    untouched_users = np.setdiff1d(np.arange(10), touched_users)
    untouched_items = np.setdiff1d(np.arange(12), touched_items)
    np.testing.assert_array_equal(users1[untouched_users], users0[untouched_users])
    np.testing.assert_array_equal(items1[untouched_items], items0[untouched_items])
    assert (users1[touched_users] != users0[touched_users]).all(axis=1).all()
    assert (items1[touched_items] != items0[touched_items]).all(axis=1).all()
    # Whole-table L2 (the notebook's) moves every row, with either Adam.
    for lazy in (False, True):
        (users0, items0), (users1, items1) = one_step("tables", lazy=lazy)
        assert (users1 != users0).all() and (items1 != items0).all()


def test_lazy_adam_padding_does_not_move_rows_the_batch_left_alone():
    # Epoch 1 moves user 0 and item 0 (their moments become non-zero); epoch 2 is a
    # short batch without them. Padding the short batch must not count them as
    # touched: with zero-id padding their moments decayed and they stepped again.
    import keras

    from models._keras_nets import _BilinearNet, _CompiledTrainer

    net = _BilinearNet(
        10, 12, latent_dim=4, cosine=True, margin=1.0, l2_reg=1e-3,
        seeds=np.array([3, 4]), regularization="batch-rows",
    )  # fmt: skip
    net.build_all()
    rng = np.random.Generator(np.random.PCG64(0))
    trainer = _CompiledTrainer(net, keras.optimizers.Adam(0.1), 4, False, rng, lazy=True)
    trainer.run_epoch(Triplets(*(np.array(x, np.int32) for x in ([0, 1], [0, 2], [3, 0]))))
    users0, items0 = (t.numpy() for t in net.trainable_variables)
    trainer.run_epoch(Triplets(*(np.array(x, np.int32) for x in ([2, 5], [1, 3], [4, 7]))))
    users1, items1 = (t.numpy() for t in net.trainable_variables)
    np.testing.assert_array_equal(users1[[0, 1]], users0[[0, 1]])
    np.testing.assert_array_equal(items1[[0, 2]], items0[[0, 2]])
    assert (users1[[2, 5]] != users0[[2, 5]]).all()


@pytest.mark.parametrize("cls", [KerasBilinear, KerasDeep])
def test_training_lowers_the_loss_and_beats_popularity(cls, tiny):
    from models.baselines import Popularity

    model = _fit(cls(epochs=30, batch_size=128, learning_rate=0.01), tiny.train)
    losses = model.loss_history_
    assert losses[-1] < 0.7 * losses[0]
    popularity = _fit(Popularity(), tiny.train)
    assert _auc(tiny, model)["auc"] > _auc(tiny, popularity)["auc"] + 0.02


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", ["keras-bilinear", "keras-deep"])
def test_lazy_adam_trains_both_models(name, jit_compile, tiny):
    # keras-bilinear's fast preset (batch-rows L2, lazy Adam; sparse embedding
    # gradients) and the deep model's mix of sparse embeddings and dense kernels,
    # with and without XLA: each learns. The two jit settings are not compared with
    # each other here: they round differently, and over many epochs Adam's normalised
    # steps, the hinges and the `hard` argmax choices turn that into different paths
    # (on AVX-512 machines 28% of the scores differed by up to 0.01 after 2 epochs).
    # That they take the same step is test_trainers_take_the_same_first_step.
    from models.baselines import Popularity

    params = {"batch_size": 128, "learning_rate": 0.01, "optimizer": "lazy-adam"}
    model = REGISTRY.make(name, "fast", jit_compile=jit_compile, epochs=20, **params)
    _fit(model, tiny.train)
    assert model.loss_history_[-1] < 0.7 * model.loss_history_[0]
    popularity = _fit(Popularity(), tiny.train)
    assert _auc(tiny, model)["auc"] > _auc(tiny, popularity)["auc"] + 0.02


@pytest.mark.parametrize("cls", [KerasBilinear, KerasDeep])
def test_hard_negatives_score_pairs_with_the_current_model(cls, tiny):
    model = cls(negatives="hard", hard_candidates=5, batch_size=64, epochs=2)
    calls = []

    def check(epoch):
        users = np.arange(tiny.num_users)
        items = np.full(users.size, 3, np.int32)
        pairs = model._score_pairs(users.astype(np.int32), items)
        tolerance = _score_tolerance(model, users, items)
        assert (np.abs(pairs - model.score(users)[:, 3]) <= tolerance).all()
        calls.append(epoch)

    _fit(model, tiny.train, on_epoch=check)
    assert calls == [1, 2]


def test_scores_change_between_epochs_and_score_works_mid_fit(tiny):
    model = KerasBilinear(batch_size=64, epochs=3)
    seen = []
    _fit(model, tiny.train, on_epoch=lambda epoch: seen.append(model.score(np.arange(5))))
    assert len(seen) == 3
    assert not np.allclose(seen[0], seen[1]) and not np.allclose(seen[1], seen[2])
    np.testing.assert_array_equal(seen[-1], model.score(np.arange(5)))


def test_compiled_trainer_dropout_masks_have_the_rate_and_are_seeded():
    import keras

    from models._keras_nets import _CompiledTrainer, _DeepNet

    net = _DeepNet(
        10, 12, user_dim=4, item_dim=6, n_hidden=2, hidden_size=8, dropout=0.1,
        margin=1.0, l2_reg=0.0, seeds=np.arange(8),
    )  # fmt: skip
    net.build_all()

    def trainer(seed):
        rng = np.random.Generator(np.random.PCG64(seed))
        return _CompiledTrainer(net, keras.optimizers.SGD(0.1), 32, False, rng)

    masks = trainer(0).keep_masks(200)
    # Per triplet: two pairs x (4 + 6 inputs + 2 hidden layers of 8) units.
    assert masks.shape == (200, 32, 2, 26) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 1}
    dropped = 1.0 - masks.mean()
    # rate 0.1 rounded to 6554 / 65536; 332,800 units give a standard error of 5.2e-4.
    assert abs(dropped - 6554 / 65536) < 4 * np.sqrt(0.1 * 0.9 / masks.size)
    # Units and pairs are independent: the drop rate is the same in every column.
    by_column = 1.0 - masks.reshape(-1, 2 * 26).mean(axis=0)
    assert np.all(np.abs(by_column - 0.1) < 5 * np.sqrt(0.1 * 0.9 / (200 * 32)))
    np.testing.assert_array_equal(trainer(0).keep_masks(3), masks[:3])
    assert not np.array_equal(trainer(1).keep_masks(3), masks[:3])


def test_refit_starts_from_fresh_weights(tiny):
    model = KerasDeep(batch_size=64, epochs=1, dropout=0.1)
    first = _fit(model, tiny.train, seed=4).score(np.arange(10))
    _fit(model, tiny.train, seed=5)
    again = _fit(model, tiny.train, seed=4).score(np.arange(10))
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6)


def test_non_finite_weights_raise(tiny):
    model = KerasBilinear(
        similarity="dot", learning_rate=1e30, optimizer="sgd", l2_reg=0.0, batch_size=64, epochs=5
    )
    with pytest.raises(FloatingPointError, match="non-finite"):
        _fit(model, tiny.train)


# -- real data ---------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["keras-bilinear", "keras-deep"])
def test_untrained_models_rank_at_random(name, ml100k):
    # fit over an empty epoch builds and initialises the networks exactly as a real
    # fit does, then takes no training step: the notebook's "random model" check.
    model = REGISTRY.make(name, "notebook")
    _fit(model, ml100k.train, sampler=_NoTriplets(ml100k.num_items), epochs=1)
    auc = _auc(ml100k, model)["auc"]
    assert 0.47 < auc < 0.53, auc


@pytest.mark.realdata
@pytest.mark.xdist_group("ml100k-fits")
def test_bilinear_notebook_preset_reproduces_the_published_auc(ml100k, ml100k_fit):
    # The session's fit (seed 0), shared with test_parity's keras-versus-torch check.
    auc = _auc(ml100k, ml100k_fit("keras-bilinear", "notebook", seed=0))["auc"]
    # Published: 0.919-0.922 at epoch 10; much higher would mean leakage.
    assert 0.91 <= auc <= 0.935, auc


@pytest.mark.realdata
@pytest.mark.slow
def test_deep_notebook_preset_reaches_the_notebook_target(ml100k):
    # The notebook asks for >= 0.91 (published: 0.89 at epoch 10, 0.91 by 15-20).
    # Evaluate from epoch 12 on and stop as soon as the target is met.
    model = REGISTRY.make("keras-deep", "notebook")
    history = {}

    class Reached(Exception):
        pass

    def check(epoch):
        if epoch >= 12:
            history[epoch] = _auc(ml100k, model)["auc"]
            if history[epoch] >= 0.91:
                raise Reached

    with pytest.raises(Reached):
        _fit(model, ml100k.train, on_epoch=check)
    assert max(history) <= 20


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "target"), [("keras-bilinear", 0.92), ("keras-deep", 0.91)])
def test_fast_presets_reach_the_notebook_quality(name, target, ml100k):
    # The fast presets' whole point: the notebook presets' AUC (bilinear 0.923,
    # deep 0.915 over 3 seeds in the committed baseline) in a tenth of the time.
    # The time half is measured by the notebook suite, not here. keras-bilinear's
    # fast preset regularises only the batch's rows (with lazy Adam): 0.924 at seeds 0-2.
    model = REGISTRY.make(name, "fast")
    _fit(model, ml100k.train)
    assert _auc(ml100k, model)["auc"] >= target
