"""Cross-framework parity: the PyTorch and the Keras triplet models are the same model.

Two levels: an exact one (the notebook's Keras network, built here from its
layers, and :class:`models.torch_triplet.TorchBilinear` take the same steps
from the same weights on the same triplets), and the claim that matters on
real data (with the ``notebook`` preset, ``torch-bilinear`` and
``keras-bilinear`` reach the same AUC within 0.01).
"""

from __future__ import annotations

import os

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


@pytest.mark.parametrize(
    ("optimizer", "learning_rate"),
    [("adam", 1e-2), ("sgd", 5.0), ("rmsprop", 1e-2), ("adagrad", 0.5)],
)
def test_same_steps_as_the_notebook_keras_network(optimizer, learning_rate):
    num_users, num_items, dim, batch, steps = 12, 20, 8, 16, 12
    l2_reg, margin = 1e-3, 1.0
    gen = np.random.default_rng(0)
    users0 = gen.uniform(-0.05, 0.05, (num_users, dim)).astype(np.float32)
    items0 = gen.uniform(-0.05, 0.05, (num_items, dim)).astype(np.float32)
    u = gen.integers(0, num_users, steps * batch)
    p = gen.integers(0, num_items, steps * batch)
    n = gen.integers(0, num_items, steps * batch)

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

    for step in range(steps):
        rows = slice(step * batch, (step + 1) * batch)
        net.train_on_batch(
            [u[rows, None], p[rows, None], n[rows, None]], np.zeros(batch, dtype=np.float32)
        )
        model._train_batch(*(torch.from_numpy(ids[rows]) for ids in (u, p, n)))
    model._fold_decay()  # SGD keeps its L2 decay as one scale factor until an epoch ends

    moved = np.abs(user_layer.get_weights()[0] - users0).max()
    assert moved > 10 * 1e-5  # the steps really changed the weights
    np.testing.assert_allclose(
        model._user_table.numpy(), user_layer.get_weights()[0], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        model._item_table.numpy(), item_layer.get_weights()[0], rtol=1e-4, atol=1e-5
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_notebook_preset_auc_matches_keras_on_movielens(ml100k):
    from metrics import Evaluator, summarize

    evaluator = Evaluator(ml100k.test.to_bool_csr(), ml100k.exclusion("train-positives"), ks=(10,))
    aucs = {}
    for name in ("torch-bilinear", "keras-bilinear"):
        model = REGISTRY.make(name, "notebook")
        assert model.epochs == 10
        model.fit(ml100k.train, rng=np.random.default_rng(0))
        aucs[name] = summarize(evaluator.evaluate(model))["auc"]
    assert min(aucs.values()) >= 0.91, aucs  # both really trained (published: 0.919 - 0.922)
    assert abs(aucs["torch-bilinear"] - aucs["keras-bilinear"]) <= 0.01, aucs
