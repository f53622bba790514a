"""Cross-framework parity: the PyTorch and the Keras triplet models are the same model.

Two levels: an exact one (the notebook's Keras network, built here from its
layers, and :class:`models.torch_triplet.TorchBilinear` take the same steps
from the same weights on the same triplets), and the claim that matters on
real data (with the ``notebook`` preset, ``torch-bilinear`` and
``keras-bilinear`` reach the same AUC within 0.01).
"""

from __future__ import annotations

import os

import float_bounds
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from bench.registry import default_registry  # noqa: E402
from models.torch_triplet import TorchBilinear  # noqa: E402

REGISTRY = default_registry()


def _notebook_keras_model(num_users, num_items, dim, *, l2_reg, margin, optimizer):
    """The notebook's triplet network, written with the notebook's Keras layers."""
    from keras import layers, regularizers

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"Keras backend is {keras.backend.backend()!r}, not tensorflow")
    user_in = keras.Input((1,), dtype="int32")
    pos_in = keras.Input((1,), dtype="int32")
    neg_in = keras.Input((1,), dtype="int32")
    user_layer = layers.Embedding(num_users, dim, embeddings_regularizer=regularizers.l2(l2_reg))
    item_layer = layers.Embedding(num_items, dim, embeddings_regularizer=regularizers.l2(l2_reg))
    flatten = layers.Flatten()
    users = flatten(user_layer(user_in))
    pos = flatten(item_layer(pos_in))
    neg = flatten(item_layer(neg_in))
    pos_sim = layers.Dot(axes=1, normalize=True)([users, pos])
    neg_sim = layers.Dot(axes=1, normalize=True)([users, neg])
    loss = keras.ops.relu(margin + neg_sim - pos_sim)
    model = keras.Model([user_in, pos_in, neg_in], loss)
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    return model, user_layer, item_layer


_OPTIMIZERS = [("adam", 1e-2), ("sgd", 5.0), ("rmsprop", 1e-2), ("adagrad", 0.5)]


def _first_step_slope(optimizer, learning_rate, g):
    """Largest |d step / d g| of the optimizer's first step over gradients of magnitude >= g.

    Keras's first steps (and the torch twins'): SGD lr g; Adam lr g / (|g| + c), c =
    1e-7 / sqrt(1 - 0.999); RMSprop lr g / sqrt(0.1 g^2 + 1e-7); Adagrad
    lr g / sqrt(0.1 + 1e-7 + g^2). Each slope falls as |g| grows.
    """
    if optimizer == "sgd":
        return np.full_like(g, learning_rate)
    if optimizer == "adam":
        c = 1e-7 / np.sqrt(1 - 0.999)
        return learning_rate * c / (g + c) ** 2
    if optimizer == "rmsprop":
        return learning_rate * 1e-7 / (0.1 * g**2 + 1e-7) ** 1.5
    a = 0.1 + 1e-7
    return learning_rate * a / (a + g**2) ** 1.5


def _notebook_gradients(users, items, u, p, n, *, l2_reg, margin):
    """The notebook objective's gradient at float64 ``users``, ``items`` (autograd)."""
    users = torch.tensor(users, dtype=torch.float64, requires_grad=True)
    items = torch.tensor(items, dtype=torch.float64, requires_grad=True)

    def normalize(x):
        return x * torch.rsqrt(torch.clamp_min((x * x).sum(1, keepdim=True), 1e-14))

    uu, pp, nn = normalize(users[u]), normalize(items[p]), normalize(items[n])
    hinge = torch.relu(margin + (uu * nn).sum(1) - (uu * pp).sum(1)).mean()
    (hinge + l2_reg * ((users**2).sum() + (items**2).sum())).backward()
    return users.grad.numpy(), items.grad.numpy()


@pytest.mark.parametrize(("optimizer", "learning_rate"), _OPTIMIZERS)
def test_same_first_step_as_the_notebook_keras_network(optimizer, learning_rate):
    # From the same weights, one batch: Keras's layers and optimizer and the torch
    # adapter's closed form take the same step up to rounding. Only one step: the two
    # frameworks round differently (and by CPU), and later steps, the hinges and the
    # adaptive rules' division by sqrt(v) amplify that without bound; the rules' state
    # over many steps is compared on identical gradients below. Bound: each gradient
    # entry is within gamma(128) (d = 8, 16 triplets, 20-row whole-table L2) times its
    # |.|-computation G of the exact one (tests/float_bounds.py), so the two are
    # Delta = 2 gamma G apart, and the steps by the rule's largest slope over
    # [|g| - Delta, |g| + Delta] times Delta; plus a few roundings of w and the step.
    num_users, num_items, dim, batch = 12, 20, 8, 16
    l2_reg, margin = 1e-3, 1.0
    gen = np.random.default_rng(0)
    users0 = gen.uniform(-0.05, 0.05, (num_users, dim)).astype(np.float32)
    items0 = gen.uniform(-0.05, 0.05, (num_items, dim)).astype(np.float32)
    u, p, n = (gen.integers(0, rows, batch) for rows in (num_users, num_items, num_items))

    keras_optimizer = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
    }[optimizer](learning_rate)
    net, user_layer, item_layer = _notebook_keras_model(
        num_users, num_items, dim, l2_reg=l2_reg, margin=margin, optimizer=keras_optimizer
    )
    user_layer.set_weights([users0])
    item_layer.set_weights([items0])

    model = TorchBilinear(
        latent_dim=dim,
        l2_reg=l2_reg,
        margin=margin,
        optimizer=optimizer,
        learning_rate=learning_rate,
        batch_size=batch,
        num_threads=None,
    )
    model.validate_params()
    model._device = torch.device("cpu")
    model._build(num_users, num_items, torch.Generator().manual_seed(0))
    model._loss_sum = torch.zeros(())
    model._user_table.copy_(torch.from_numpy(users0))
    model._item_table.copy_(torch.from_numpy(items0))

    net.train_on_batch([u[:, None], p[:, None], n[:, None]], np.zeros(batch, dtype=np.float32))
    model._train_batch(*(torch.from_numpy(ids) for ids in (u, p, n)))
    model._fold_decay()  # SGD keeps its L2 decay as one scale factor until an epoch ends

    gamma = float_bounds.gamma(128)
    starts = [users0.astype(np.float64), items0.astype(np.float64)]
    hinge, hinge_abs, *grads_abs = float_bounds.triplet_hinge_step(
        *starts, u, p, n, margin=margin, cosine=True, closed_below=2 * gamma
    )
    assert ((np.abs(hinge) > 2 * gamma * hinge_abs) | (p == n)).all()  # no gate near 0
    grads = _notebook_gradients(*starts, u, p, n, l2_reg=l2_reg, margin=margin)
    for ours, theirs, start, grad, grad_abs in zip(
        (model._user_table.numpy(), model._item_table.numpy()),
        (user_layer.get_weights()[0], item_layer.get_weights()[0]),
        starts,
        grads,
        grads_abs,
    ):
        delta = 2 * gamma * (grad_abs + 2 * l2_reg * np.abs(start))
        nearest = np.maximum(np.abs(grad) - delta, 0)
        step = np.abs(ours - start)
        tolerance = _first_step_slope(optimizer, learning_rate, nearest) * delta
        tolerance += 2 * gamma * (np.abs(start) + step)
        assert (np.abs(ours - theirs) <= tolerance).all()
        # A real comparison: almost every entry's step is far above its bound (an
        # entry whose gradient is within rounding of 0 is not, under Adam or RMSprop).
        assert (tolerance < 0.01 * step).mean() > 0.95


@pytest.mark.parametrize(("optimizer", "learning_rate"), _OPTIMIZERS)
def test_same_update_rules_as_keras_over_many_steps(optimizer, learning_rate):
    # Keras's optimizer and the torch adapter's _Optimizer on the same 12 float32
    # gradients: their moments and accumulators must evolve alike. Per step each rule
    # is a few elementwise operations on inputs that agree to rounding (the weights
    # do not feed back into the gradients here); the worst is Adam's
    # m / (sqrt(v) + eps), m a sum that may cancel (error <= 3u max|g|) over
    # sqrt(v) >= 0.03 max|g|, times a step size <= 0.2 lr, with |m| / sqrt(v) <= 23:
    # < 250u lr per step, u = 2**-24, plus a rounding of w on each side. So 12 steps
    # differ by less than 12 (1000u lr (1 + max|g|) + 4u max|w|).
    from models.torch_triplet import _Optimizer

    gen = np.random.default_rng(1)
    start = gen.normal(size=(6, 4)).astype(np.float32)
    grads = [gen.normal(size=(6, 4)).astype(np.float32) for _ in range(12)]
    keras_optimizer = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
    }[optimizer](learning_rate)
    variable = keras.Variable(start)
    table = torch.tensor(start)
    rule = _Optimizer(optimizer, [table], learning_rate)
    for grad in grads:
        keras_optimizer.apply([keras.ops.convert_to_tensor(grad)], [variable])
        rule.step([torch.tensor(grad)])
    u = 2.0**-24
    largest_grad = max(np.abs(g).max() for g in grads)
    largest_w = max(np.abs(start).max(), np.abs(table.numpy()).max())
    bound = 12 * (1000 * u * learning_rate * (1 + largest_grad) + 4 * u * largest_w)
    moved = np.abs(table.numpy() - start)
    assert np.abs(table.numpy() - keras.ops.convert_to_numpy(variable)).max() <= bound
    assert moved.max() > 100 * bound  # the rules moved the weights far more than that


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.xdist_group("ml100k-fits")
def test_notebook_preset_auc_matches_keras_on_movielens(ml100k, ml100k_fit):
    from metrics import Evaluator, summarize

    evaluator = Evaluator(ml100k.test.to_bool_csr(), ml100k.exclusion("train-positives"), ks=(10,))
    aucs = {}
    for name in ("torch-bilinear", "keras-bilinear"):
        model = ml100k_fit(name, "notebook", seed=0)  # shared with the per-framework tests
        assert model.epochs == 10
        aucs[name] = summarize(evaluator.evaluate(model))["auc"]
    assert min(aucs.values()) >= 0.91, aucs  # both really trained (published: 0.919 - 0.922)
    assert abs(aucs["torch-bilinear"] - aucs["keras-bilinear"]) <= 0.01, aucs
