"""Factorization machine: brute-force FM formula, feature switches, training, determinism."""

from __future__ import annotations

import float_bounds
import numpy as np
import pytest

pytest.importorskip("torch")

import scipy.sparse as sp
import torch

from bench.datasets.dataset import SideFeatures
from bench.interactions import Interactions
from bench.sampler import NegativeSampler
from metrics import Evaluator, summarize
from models import base as models_base
from models.base import NotFittedError
from models.baselines import Popularity
from models.fm import FactorizationMachine, _LazyAdam


def _fit(model, data, features=None, seed=0, **kwargs):
    return model.fit(data.train, rng=np.random.default_rng(seed), features=features, **kwargs)


def _auc(model, data):
    evaluator = Evaluator(data.test.to_bool_csr(), data.exclusion("train-positives"))
    return summarize(evaluator.evaluate(model))["auc"]


@pytest.fixture(scope="module")
def weighted_features(tiny_features):
    """``tiny_features`` with non-binary values, so ``x_j^2 != x_j`` matters."""
    gen = np.random.default_rng(11)
    out = []
    for side in tiny_features:
        matrix = side.matrix.copy()
        matrix.data = gen.uniform(0.5, 2.0, matrix.nnz).astype(np.float32)
        out.append(SideFeatures(matrix, side.names))
    return tuple(out)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"loss": "hinge"}, "loss"),
        ({"margin": -1.0}, "margin"),
        ({"l2_reg": -1e-3}, "l2_reg"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"negatives": "nearest"}, "negatives"),
        ({"negatives_alpha": -0.5}, "negatives_alpha"),
        ({"hard_candidates": 0}, "hard_candidates"),
        ({"use_item_features": 1}, "use_item_features"),
        ({"init_std": 0.0}, "init_std"),
        ({"num_threads": 0}, "num_threads"),
        ({"epochs": -2}, "epochs"),
    ],
)
def test_impossible_params_raise(params, match, tiny):
    with pytest.raises(ValueError, match=match):
        _fit(FactorizationMachine(**params), tiny)


def test_constructor_only_stores_and_not_fitted():
    model = FactorizationMachine(latent_dim=3, loss="margin")
    assert model.get_params()["latent_dim"] == 3
    assert not hasattr(model, "_model")
    with pytest.raises(NotFittedError):
        model.score(np.arange(2))


def _brute_force_fm(model, data, features, users):
    """``w0 + w.x + sum_{j<l} <v_j, v_l> x_j x_l`` from dense feature vectors, no tricks."""
    user_side, item_side = features
    num_users, num_items = data.num_users, data.num_items
    user_block = np.hstack([np.eye(num_users), user_side.matrix.toarray()])
    item_block = np.hstack([np.eye(num_items), item_side.matrix.toarray()])
    table = model._model.table.detach().numpy().astype(np.float64)
    w0 = float(model._model.w0.detach())
    v, w = table[:, :-1], table[:, -1]
    upper = np.triu(v @ v.T, k=1)
    out = np.empty((len(users), num_items))
    for row, user in enumerate(users):
        for item in range(num_items):
            x = np.concatenate([user_block[user], item_block[item]])
            out[row, item] = w0 + w @ x + x @ upper @ x
    return out


def _fm_score_tolerance(model, users):
    """Twice the rounding bound of a float32 FM score, per (user, item), float64.

    Each scorer (the sum-square trick and one matmul, the brute-force formula, the
    pair callback) is within gamma(_FM_DEPTH) of the exact score times its
    |.|-computation ``|w0| + sum|x_j w_j| + 0.5 (sum_k (sum_j |x_j v_jk|)^2 +
    sum_j x_j^2 |v_j|^2)`` over the user's and the item's features.
    """
    k = model._model.latent_dim
    table = np.abs(model._model.table.detach().numpy().astype(np.float64))

    def side(columns, values, rows):
        part = table[np.asarray(columns)[rows]] * np.abs(np.asarray(values)[rows])[..., None]
        sums = part[..., :k].sum(1)
        return sums, part[..., k].sum(1) + 0.5 * (part[..., :k] ** 2).sum((1, 2))

    user_sums, user_rest = side(model._user_columns, model._user_values, np.asarray(users))
    item_sums, item_rest = side(
        model._item_columns, model._item_values, np.arange(model._num_items)
    )
    pair = (user_sums[:, None, :] + item_sums[None, :, :]) ** 2
    magnitude = abs(float(model._model.w0.detach())) + user_rest[:, None] + item_rest[None, :]
    magnitude = magnitude + 0.5 * pair.sum(-1)
    return 2 * float_bounds.gamma(_FM_DEPTH) * magnitude


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_score_equals_brute_force_fm(loss, tiny, weighted_features):
    model = _fit(
        FactorizationMachine(latent_dim=4, loss=loss, epochs=2, batch_size=64),
        tiny,
        features=weighted_features,
    )
    users = np.array([3, 0, 41])
    expected = _brute_force_fm(model, tiny, weighted_features, users)
    tolerance = _fm_score_tolerance(model, users)
    assert (np.abs(model.score(users) - expected) <= tolerance).all()
    # The hard sampler's pair callback computes the same function.
    pairs = model._score_pairs(np.repeat(users, 5), np.tile(np.arange(5), 3))
    assert (np.abs(pairs - expected[:, :5].ravel()) <= tolerance[:, :5].ravel()).all()


def test_without_features_it_is_biased_mf(tiny, tiny_features):
    model = _fit(
        FactorizationMachine(
            latent_dim=4, epochs=2, use_user_features=False, use_item_features=False
        ),
        tiny,
        features=tiny_features,
    )
    table = model._model.table.detach().numpy()
    assert table.shape == (tiny.num_users + tiny.num_items, 5)
    user_rows, item_rows = table[: tiny.num_users], table[tiny.num_users :]
    expected = (
        float(model._model.w0.detach())
        + user_rows[:, -1:]
        + item_rows[:, -1]
        + user_rows[:, :-1] @ item_rows[:, :-1].T
    )
    tolerance = _fm_score_tolerance(model, np.arange(tiny.num_users))
    assert (np.abs(model.score(np.arange(tiny.num_users)) - expected) <= tolerance).all()
    # Switching both features off is the same model as fitting without features.
    ids_only = _fit(FactorizationMachine(latent_dim=4, epochs=2), tiny, features=None)
    np.testing.assert_array_equal(ids_only.score(np.arange(6)), model.score(np.arange(6)))


@pytest.mark.parametrize(("use_user", "use_item"), [(True, True), (True, False), (False, True)])
def test_feature_switches_set_feature_space(use_user, use_item, tiny, tiny_features):
    user_side, item_side = tiny_features
    model = _fit(
        FactorizationMachine(
            latent_dim=2, epochs=1, use_user_features=use_user, use_item_features=use_item
        ),
        tiny,
        features=tiny_features,
    )
    expected = (
        tiny.num_users
        + tiny.num_items
        + use_user * user_side.num_features
        + use_item * item_side.num_features
    )
    assert model._model.table.shape == (expected, 3)
    # One side missing from ``features`` means ids only on that side.
    half = _fit(FactorizationMachine(latent_dim=2, epochs=1), tiny, features=(None, item_side))
    assert half._model.table.shape[0] == tiny.num_users + tiny.num_items + item_side.num_features


def test_bad_features_raise(tiny, tiny_features):
    user_side, item_side = tiny_features
    short = SideFeatures(user_side.matrix[:5], user_side.names)
    with pytest.raises(ValueError, match="user features have 5 rows"):
        _fit(FactorizationMachine(epochs=1), tiny, features=(short, item_side))
    with pytest.raises(ValueError, match="features must be None or a"):
        _fit(FactorizationMachine(epochs=1), tiny, features=[user_side, item_side])
    bad = item_side.matrix.copy()
    bad.data[0] = np.nan
    with pytest.raises(FloatingPointError, match="item side features"):
        _fit(
            FactorizationMachine(epochs=1),
            tiny,
            features=(user_side, SideFeatures(sp.csr_matrix(bad), item_side.names)),
        )


# Roundings on the longest chain from the table to a batch's loss or to one gradient
# entry: a pair's feature sums (<= 10 slots) and its k <= 8 dot product, the loss's
# slope, a slot's gradient, and a row's sum over its <= 2 x 100 uses; 512 bounds it.
_FM_DEPTH = 512


def _fm_step_bounds(model, users, items):
    """|.|-computations (float64) of one closed-form batch at the model's table.

    Returns ``(loss_abs, grad_abs)``: the batch loss's |.|-computation, and every
    table entry's gradient |.|-computation (each pair's slope, every feature value
    and weight replaced by its absolute value). A float32 evaluation of either, by
    any kernel and summation order, is within ``gamma(_FM_DEPTH)`` times it of the
    exact value, while no hinge lies within rounding of 0 (checked here); BPR's
    slope sigmoid(-d) moves by at most 1/4 of d's error, a first-order term
    included as the factor ``1 + diff_abs / 4``.
    """
    users, items = np.asarray(users), np.asarray(items)
    n = users.shape[0]
    k = model._model.latent_dim
    table = np.abs(model._model.table.detach().numpy().astype(np.float64))
    signed = model._model.table.detach().numpy().astype(np.float64)
    user_cols, user_vals = (np.asarray(a)[users] for a in (model._user_columns, model._user_values))
    item_cols, item_vals = (np.asarray(a)[items] for a in (model._item_columns, model._item_values))
    user_vals, item_vals = user_vals.astype(np.float64), item_vals.astype(np.float64)
    user_part = table[user_cols] * np.abs(user_vals)[..., None]  # |x_j| |[v_j, w_j]|
    item_part = table[item_cols] * np.abs(item_vals)[..., None]
    user_sum, item_sum = user_part[..., :k].sum(1), item_part[..., :k].sum(1)
    pair_sum = np.vstack([user_sum, user_sum]) + item_sum
    fm_abs = item_part[..., k].sum(1) + 0.5 * (
        (pair_sum**2).sum(1) + (item_part[..., :k] ** 2).sum((1, 2))
    )
    diff_abs = fm_abs[:n] + fm_abs[n:]
    # The signed difference, for the hinge check and BPR's loss.
    xv_u = signed[user_cols] * user_vals[..., None]
    xv_i = signed[item_cols] * item_vals[..., None]
    s = np.vstack([xv_u[..., :k].sum(1)] * 2) + xv_i[..., :k].sum(1)
    fm = xv_i[..., k].sum(1) + 0.5 * ((s**2).sum(1) - (xv_i[..., :k] ** 2).sum((1, 2)))
    diff = fm[:n] - fm[n:]
    gamma = float_bounds.gamma(_FM_DEPTH)
    if model.loss == "margin":
        hinge = model.margin - diff
        assert (np.abs(hinge) > 2 * gamma * (model.margin + diff_abs)).all(), "a hinge near 0"
        slope = (hinge > 0) / n
        loss_abs = (model.margin + diff_abs).mean()
    else:
        slope = (1 + diff_abs / 4) / n
        loss_abs = (diff_abs + np.logaddexp(0, -diff)).mean()
    grad = np.zeros_like(table)
    x_u, x_i = np.abs(user_vals)[..., None], np.abs(item_vals)[..., None]
    both = np.concatenate([slope, slope])[:, None, None]
    # User slots: d diff / d v_j = x_j (s_i(p) - s_i(q)); the user's own terms cancel.
    user_grad = np.zeros_like(user_part)
    user_grad[..., :k] = x_u * (item_sum[:n] + item_sum[n:])[:, None, :] * slope[:, None, None]
    # Item slots: d fm / d v_j = x_j (s - x_j v_j), d fm / d w_j = x_j.
    item_grad = np.zeros_like(item_part)
    item_grad[..., :k] = x_i * (pair_sum[:, None, :] + item_part[..., :k]) * both
    item_grad[..., k] = x_i[..., 0] * both[..., 0]
    # L2: 2 l2 / n x_j^2 [v_j, w_j] per slot.
    l2 = 2 * float(model.l2_reg) / n
    user_grad += l2 * x_u * user_part
    item_grad += l2 * x_i * item_part
    width = k + 1
    np.add.at(grad, user_cols.reshape(-1), user_grad.reshape(-1, width))
    np.add.at(grad, item_cols.reshape(-1), item_grad.reshape(-1, width))
    return loss_abs, grad


def _autograd_objective(model, users, items):
    """The batch objective as autograd sees it: the sum-square trick through ``part``."""
    n = users.shape[0]
    s_u, sq_u, _, lin_sq_u = model._model.part(
        model._user_columns[users], model._user_values[users]
    )
    s_i, sq_i, lin_i, lin_sq_i = model._model.part(
        model._item_columns[items], model._item_values[items]
    )
    fm = lin_i + 0.5 * ((s_u.repeat(2, 1) + s_i).pow(2).sum(1) - sq_i)
    diff = fm[:n] - fm[n:]
    if model.loss == "bpr":
        loss = torch.nn.functional.softplus(-diff).mean()
    else:
        loss = torch.relu(model.margin - diff).mean()
    penalty = (sq_u + lin_sq_u).sum() + (sq_i + lin_sq_i).sum()
    return loss, loss + model.l2_reg * penalty / n


def _closed_form_table_grad(model, gradients, users, items):
    """Loss and dense table gradient from a closed-form ``(loss, rows, grads)`` function."""
    with torch.no_grad():
        loss, rows, grads = gradients(users, items)
        return loss, torch.zeros_like(model._model.table).index_add_(0, rows, grads)


def _batch(data, size=48, seed=0):
    gen = np.random.default_rng(seed)
    users = torch.from_numpy(gen.integers(0, data.num_users, size))
    items = torch.from_numpy(gen.integers(0, data.num_items, 2 * size))
    items[0] = items[size]  # the same item as positive and negative once
    users[1] = users[0]  # and a repeated user
    return users, items


@pytest.mark.parametrize("loss", ["bpr", "margin"])
@pytest.mark.parametrize("with_features", [False, True])
def test_closed_form_gradients_equal_autograd(loss, with_features, tiny, weighted_features):
    features = weighted_features if with_features else None
    model = _fit(
        FactorizationMachine(latent_dim=4, loss=loss, epochs=1, batch_size=64, l2_reg=0.05),
        tiny,
        features=features,
    )
    assert model._ids_only is not with_features
    with torch.no_grad():  # non-zero linear weights, and margins on both sides of 0
        model._model.table.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    users, items = _batch(tiny)
    table = model._model.table
    table.grad = None
    expected_loss, objective = _autograd_objective(model, users, items)
    objective.backward()
    gradient_functions = [model._row_gradients]
    if not with_features:
        gradient_functions.append(model._ids_only_gradients)
    # Autograd and the closed form sum in different orders (torch's kernels by CPU):
    # within twice the rounding bound of _fm_step_bounds.
    loss_abs, grad_abs = _fm_step_bounds(model, users, items)
    gamma = float_bounds.gamma(_FM_DEPTH)
    for gradients in gradient_functions:
        got_loss, got = _closed_form_table_grad(model, gradients, users, items)
        assert abs(float(got_loss) - float(expected_loss.detach())) <= 2 * gamma * loss_abs
        assert (np.abs(got.numpy() - table.grad.numpy()) <= 2 * gamma * grad_abs).all()
    # For lazy-adam (no dense gradient) only the real slots are returned, padding dropped.
    model.set_params(optimizer="lazy-adam")
    _, rows, _ = model._row_gradients(users, items)
    real_slots = int(model._user_real[users].sum() + model._item_real[items].sum())
    assert rows.shape == (real_slots,)
    got = _closed_form_table_grad(model, model._row_gradients, users, items)[1].numpy()
    assert (np.abs(got - table.grad.numpy()) <= 2 * gamma * grad_abs).all()
    assert np.abs(table.grad.numpy()).max() > 100 * (2 * gamma * grad_abs).max()  # a real test


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
@pytest.mark.parametrize("with_features", [False, True])
def test_dense_training_matches_autograd_training(
    with_features, optimizer, tiny, weighted_features, monkeypatch
):
    # The PyTorch closed form against autograd through ``part`` (the training loop
    # before the closed form), on every batch of two epochs of the model's own
    # training: from the same table, the same loss and gradient up to twice the
    # rounding bound of _fm_step_bounds. Not the tables after two epochs: Adam and
    # Adagrad divide by sqrt(v), so rounding-level gradient differences on entries with
    # tiny gradients grow into differences that depend on the CPU. The fused torch
    # rules against the plain ones is test_fused_rules_equal_the_plain_ones; the
    # compiled ids-only step, test_compiled_ids_only_training_equals_torch_training.
    monkeypatch.setattr("models.fm._COMPILED", False)
    features = weighted_features if with_features else None
    params = {"latent_dim": 4, "batch_size": 128, "learning_rate": 0.01, "optimizer": optimizer}
    model = FactorizationMachine(**params)
    rng = np.random.default_rng(0)
    model._num_users, model._num_items = tiny.train.shape
    model._start_training(tiny.train, models_base.derive_seed(rng), features)
    table = model._model.table
    start = table.detach().numpy().copy()
    gradients = model._ids_only_gradients if model._ids_only else model._row_gradients
    gamma = float_bounds.gamma(_FM_DEPTH)
    sampler = model.make_sampler(tiny.train)
    for _ in range(2):
        for users, pos, neg in sampler.sample(rng).batches(model.batch_size):
            users = torch.from_numpy(users.astype(np.int64))
            items = torch.from_numpy(np.concatenate([pos, neg]).astype(np.int64))
            table.grad = None
            expected_loss, objective = _autograd_objective(model, users, items)
            objective.backward()
            got_loss, got = _closed_form_table_grad(model, gradients, users, items)
            loss_abs, grad_abs = _fm_step_bounds(model, users, items)
            assert abs(float(got_loss) - float(expected_loss.detach())) <= 2 * gamma * loss_abs
            assert (np.abs(got.numpy() - table.grad.numpy()) <= 2 * gamma * grad_abs).all()
            with torch.no_grad():
                model._apply(*gradients(users, items)[1:])  # the model's own step
    table.grad = None
    assert np.abs(table.detach().numpy() - start).max() > 1e-2  # it trained


@pytest.mark.parametrize("rule", [torch.optim.Adam, torch.optim.Adagrad])
def test_fused_rules_equal_the_plain_ones(rule):
    # The model steps with fused=True; the rule is the plain one. On the same 16
    # float32 gradients (some rows zero, as for rows outside a batch) each step is a
    # few elementwise operations on inputs that agree to rounding; the worst is
    # Adam's m / (sqrt(v) + eps), m a sum that may cancel (error <= 3u max|g| for
    # the entry) over sqrt(v_hat) >= max|g| / 4 (16 steps), times a step size of at
    # most 10 lr: < 1000u lr per step, u = 2**-24 (Adagrad: |g| / sqrt(acc) <= 1), plus
    # a rounding of w on each side: 16 (1000u lr + 4u max|w|) in all.
    gen = np.random.default_rng(2)
    start = gen.normal(size=(20, 5)).astype(np.float32)
    grads = [gen.normal(size=(20, 5)).astype(np.float32) for _ in range(16)]
    for grad in grads:
        grad[gen.random(20) < 0.5] = 0.0
    tables = []
    for fused in (True, False):
        table = torch.nn.Parameter(torch.tensor(start))
        optimizer = rule([table], lr=0.01, fused=fused)
        for grad in grads:
            table.grad = torch.tensor(grad)
            optimizer.step()
        tables.append(table.detach().numpy())
    u = 2.0**-24
    largest_w = max(np.abs(start).max(), np.abs(tables[0]).max())
    bound = 16 * (1000 * u * 0.01 + 4 * u * largest_w)
    assert np.abs(tables[0] - tables[1]).max() <= bound
    assert np.abs(tables[0] - start).max() > 100 * bound


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_compiled_ids_only_gradient_equals_the_torch_gradient(loss, tiny):
    """One batch (repeated users and rows, an item both positive and negative)."""
    from models import _fm_compiled as compiled

    model = _fit(
        FactorizationMachine(latent_dim=6, loss=loss, margin=0.1, epochs=1, l2_reg=0.05), tiny
    )
    with torch.no_grad():  # non-zero linear weights, and hinges on both sides of 0
        model._model.table.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    users, items = _batch(tiny)
    n = users.shape[0]
    expected_loss, expected = _closed_form_table_grad(
        model, model._ids_only_gradients, users, items
    )
    table = model._model.table.detach().numpy()
    dense = np.full_like(table, np.nan)
    rows = table.shape[0]
    scratch = compiled.make_scratch(rows, n, table.shape[1])
    triplets = (users.numpy(), items[:n].numpy(), items[n:].numpy())
    objective = (model._item_offset, loss == "margin", 0.1, 0.05)
    got_loss = compiled.ids_only_gradient(table, triplets, 0, n, objective, scratch, 1, dense)
    # The numba loop's fixed order against torch's kernels: within twice the rounding
    # bound of _fm_step_bounds (the compiled BPR loss is float64 from float32 d).
    loss_abs, grad_abs = _fm_step_bounds(model, users, items)
    gamma = float_bounds.gamma(_FM_DEPTH)
    assert abs(got_loss / n - float(expected_loss)) <= 2 * gamma * loss_abs
    assert (np.abs(dense - expected.numpy()) <= 2 * gamma * grad_abs).all()
    assert np.abs(expected.numpy()).max() > 100 * (2 * gamma * grad_abs).max()


def _lazy_adam_slope(m, v, g, delta, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Largest |d step / d g| of a lazy Adam step (models.fm._LazyAdam) over [g - delta, g + delta].

    step = lr / (1 - beta1^t) m' / (sqrt(v') / sqrt(1 - beta2^t) + eps) with
    m' = m + (1 - beta1)(g - m) and v' = beta2 v + (1 - beta2) g^2; with D the
    denominator, |d step / d g| <= lr / (1 - beta1^t) ((1 - beta1) / D
    + |m'| sqrt(1 - beta2) / (sqrt(1 - beta2^t) D^2)), largest at the smallest |g|.
    """
    smallest = np.maximum(np.abs(g) - delta, 0)
    denominator = np.sqrt((beta2 * v + (1 - beta2) * smallest**2) / (1 - beta2**t)) + eps
    first = np.abs(m + (1 - beta1) * (g - m)) + (1 - beta1) * delta
    return (lr / (1 - beta1**t)) * (
        (1 - beta1) / denominator
        + first * np.sqrt(1 - beta2) / (np.sqrt(1 - beta2**t) * denominator**2)
    )


@pytest.mark.parametrize(
    ("optimizer", "loss"),
    [("sgd", "bpr"), ("sgd", "margin"), ("lazy-adam", "bpr"), ("adam", "bpr"), ("adagrad", "bpr")],
)
def test_compiled_ids_only_training_equals_torch_training(optimizer, loss, tiny):
    """The compiled step (models._fm_compiled) against the PyTorch ops, batch by batch.

    Two epochs of the torch model; before each batch the compiled kernel starts from
    the torch state (table, lazy Adam's moments and step count). The two sum in
    different orders (torch's by CPU), and over many steps Adam's division by
    sqrt(v) and the hinges amplify that without bound, hence one step at a time:
    the gradients differ by Delta = 2 gamma(_FM_DEPTH) G (_fm_step_bounds); SGD's
    steps by lr Delta, lazy Adam's by its largest slope over [g - Delta, g + Delta]
    times Delta (an entry whose gradient is within rounding of 0 may move by up to
    lr either way), plus a rounding of w and of the step on each side. The dense
    rules (adam, adagrad) step in torch on the compiled gradient, so the gradients
    are what is compared. That a compiled epoch is its batches one after another is
    exact: the same kernel and arithmetic, compared bit for bit.
    """
    from models import _fm_compiled as compiled

    params = {
        "latent_dim": 8,
        "batch_size": 50,  # the last batch of an epoch is short
        "learning_rate": 0.02,
        "optimizer": optimizer,
        "loss": loss,
        "l2_reg": 0.05,
        "init_std": 0.3,
    }
    model = FactorizationMachine(**params)
    rng = np.random.default_rng(0)
    model._num_users, model._num_items = tiny.train.shape
    model._start_training(tiny.train, models_base.derive_seed(rng), None)
    assert model._ids_only
    sampler = model.make_sampler(tiny.train)
    table = model._model.table.detach().numpy()  # the parameter's memory
    start = table.copy()
    objective = (model._item_offset, loss == "margin", float(model.margin), 0.05)
    lazy = optimizer == "lazy-adam"
    rule = compiled.LAZY_ADAM if lazy else compiled.SGD
    gamma = float_bounds.gamma(_FM_DEPTH)
    steps, compared, far = 0, 0, 0
    for _ in range(2):
        ids = tuple(
            np.ascontiguousarray(x, dtype=np.int64) for x in vars(sampler.sample(rng)).values()
        )
        n = ids[0].shape[0]
        if optimizer in ("sgd", "lazy-adam"):
            chain = [table.copy(), model._optimizer.moments.numpy().copy() if lazy else None]
            whole = [table.copy(), chain[1].copy() if lazy else np.zeros((1, 2, 1), np.float32)]
            scratch = compiled.make_scratch(table.shape[0], 50, table.shape[1])
            whole_out = compiled.ids_only_epoch(
                whole[0], ids, 50, objective, rule, 0.02, whole[1], steps, scratch
            )
        chain_loss, chain_steps = 0.0, steps
        for first in range(0, n, 50):
            batch = tuple(np.ascontiguousarray(x[first : first + 50]) for x in ids)
            users = torch.from_numpy(batch[0])
            items = torch.from_numpy(np.concatenate(batch[1:]))
            loss_abs, grad_abs = _fm_step_bounds(model, users, items)
            delta = 2 * gamma * grad_abs
            before = table.copy()
            with torch.no_grad():
                torch_loss, rows, grads = model._ids_only_gradients(users, items)
                gradient = torch.zeros_like(model._model.table).index_add_(0, rows, grads).numpy()
                moments = model._optimizer.moments.numpy().copy() if lazy else None
                ours = table.copy()
                scratch = compiled.make_scratch(table.shape[0], 50, table.shape[1])
                if optimizer in ("sgd", "lazy-adam"):
                    ours_moments = moments.copy() if lazy else np.zeros((1, 2, 1), np.float32)
                    our_loss, _ = compiled.ids_only_epoch(
                        ours, batch, 50, objective, rule, 0.02, ours_moments, steps, scratch, 0
                    )
                else:
                    dense = np.empty_like(table)
                    our_loss = compiled.ids_only_gradient(
                        ours, batch, 0, len(batch[0]), objective, scratch, steps + 1, dense
                    )
                    assert (np.abs(dense - gradient) <= delta).all()
                model._apply(rows, grads)  # the torch step
            steps += 1
            assert abs(our_loss / len(batch[0]) - float(torch_loss)) <= 2 * gamma * loss_abs
            if optimizer in ("sgd", "lazy-adam"):
                step = np.abs(table - before)
                if lazy:
                    m, v = moments[:, 0].astype(np.float64), moments[:, 1].astype(np.float64)
                    slope = _lazy_adam_slope(m, v, gradient, delta, steps, 0.02)
                else:
                    slope = 0.02
                # The weight itself is rounded once per use of its row (torch's
                # scatter) plus a few times by the rule: gamma(uses + 8) each side.
                uses = np.bincount(rows.numpy(), minlength=table.shape[0])[:, None]
                rounding = float_bounds.gamma(uses + 8)
                tolerance = slope * delta + 2 * rounding * (np.abs(before) + step)
                assert (np.abs(ours - table) <= tolerance).all()
                touched = step > 0
                compared += touched.sum()
                far += (tolerance < 0.1 * step)[touched].sum()
                # ... and the compiled epoch runs exactly these compiled batches.
                scratch = compiled.make_scratch(table.shape[0], 50, table.shape[1])
                part, chain_steps = compiled.ids_only_epoch(
                    chain[0], batch, 50, objective, rule, 0.02,
                    chain[1] if lazy else np.zeros((1, 2, 1), np.float32), chain_steps, scratch, 0,
                )  # fmt: skip
                chain_loss += part
        if lazy:
            model._optimizer.iterations = steps
        if optimizer in ("sgd", "lazy-adam"):
            assert whole_out == (chain_loss, chain_steps)
            assert whole[0].tobytes() == chain[0].tobytes()
            if lazy:
                assert whole[1].tobytes() == chain[1].tobytes()
    if optimizer in ("sgd", "lazy-adam"):
        assert far > 0.9 * compared  # almost every step is far above its bound
    assert np.abs(table - start).max() > 1e-3  # it trained


def test_warm_up_loads_the_kernels_every_ids_only_fit_calls(tiny):
    """After ``warm_up`` no fit compiles: each kernel's signature set stays the same."""
    from models import _fm_compiled as compiled

    FactorizationMachine().warm_up()
    kernels = (compiled.ids_only_epoch, compiled.ids_only_gradient)
    ready = [set(kernel.signatures) for kernel in kernels]
    assert all(ready)
    for optimizer in ("sgd", "lazy-adam", "adam", "adagrad"):
        model = _fit(FactorizationMachine(latent_dim=4, optimizer=optimizer, epochs=1), tiny)
        assert model._ids_only
    assert [set(kernel.signatures) for kernel in kernels] == ready


@pytest.mark.parametrize("rule", ["sgd", "lazy-adam"])
def test_compiled_prefetching_changes_no_bit(rule):
    """``ahead`` only hints the CPU: tables, moments, losses and steps are bit-identical.

    The triplets include the table's last row, so a prefetch of a row's last
    cache line is exercised at the edge of the allocation.
    """
    from models import _fm_compiled as compiled

    gen = np.random.default_rng(0)
    num_users, num_items, width, batch = 37, 53, 9, 16
    rows = num_users + num_items
    n = 203  # the last batch is short
    triplets = (
        gen.integers(0, num_users, n),
        np.append(gen.integers(0, num_items, n - 1), num_items - 1),
        gen.integers(0, num_items, n),
    )
    start = gen.normal(0, 0.3, (rows, width)).astype(np.float32)
    code = compiled.LAZY_ADAM if rule == "lazy-adam" else compiled.SGD
    results = {}
    for ahead in (0, 1, compiled.PREFETCH_AHEAD, 500):
        table, moments = start.copy(), np.zeros((rows, 2, width), np.float32)
        scratch = compiled.make_scratch(rows, batch, width)
        objective = (num_users, False, 1.0, 0.01)
        loss, steps = compiled.ids_only_epoch(
            table, triplets, batch, objective, code, 0.05, moments, 4, scratch, ahead
        )
        results[ahead] = (table, moments, loss, steps)
    table, moments, loss, steps = results[0]
    assert steps == 4 + 13 and np.abs(table - start).max() > 1e-3
    for ahead, (other_table, other_moments, other_loss, other_steps) in results.items():
        assert other_table.tobytes() == table.tobytes(), ahead
        assert other_moments.tobytes() == moments.tobytes(), ahead
        assert (other_loss, other_steps) == (loss, steps), ahead


def test_lazy_adam_moves_only_the_batch_rows():
    """Hand-computed: Adam's update on touched rows, untouched rows and moments frozen."""
    table = torch.zeros(4, 2)
    adam = _LazyAdam(table, learning_rate=0.1)
    adam.step(torch.tensor([0, 1, 0]), torch.tensor([[1.0, 2.0], [3.0, -1.0], [1.0, 0.0]]))
    # Step 1: m_hat = g, v_hat = g^2, so each touched entry moves by -lr * g / (|g| + eps).
    first = -0.1 * np.array([[2.0, 2.0], [3.0, -1.0]]) / (np.abs([[2.0, 2.0], [3.0, -1.0]]) + 1e-8)
    np.testing.assert_allclose(table[:2].numpy(), first, rtol=1e-6)
    assert not table[2:].any()
    adam.step(torch.tensor([2]), torch.tensor([[4.0, 0.0]]))
    # Rows 0 and 1 stay (dense Adam would move them by their momentum); row 2's first
    # update uses the global step t = 2 in the bias correction.
    np.testing.assert_allclose(table[:2].numpy(), first, rtol=1e-6)
    m_hat = 0.1 * 4.0 / (1 - 0.9**2)
    v_hat = 0.001 * 16.0 / (1 - 0.999**2)
    np.testing.assert_allclose(
        table[2].numpy(), [-0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), 0.0], rtol=1e-5
    )
    assert not table[3].any() and not adam.m[3].any() and not adam.v[3].any()
    np.testing.assert_allclose(adam.m[0].numpy(), [0.2, 0.2], rtol=1e-6)


def test_sgd_scatter_is_the_dense_sgd_step(tiny, tiny_features):
    params = {"latent_dim": 4, "optimizer": "sgd", "learning_rate": 0.05, "epochs": 1}
    model = FactorizationMachine(**params)
    model._num_users, model._num_items = tiny.train.shape
    model._start_training(tiny.train, 0, tiny_features)
    before = model._model.table.detach().clone()
    users, items = _batch(tiny)
    _, dense = _closed_form_table_grad(model, model._row_gradients, users, items)
    with torch.no_grad():
        model._apply(*model._row_gradients(users, items)[1:])
    # One scatter of -lr g per use against w - lr (sum of g): the same gradients,
    # summed in another order, within gamma(uses) (|w| + lr sum|g|) each way.
    _, grad_abs = _fm_step_bounds(model, users, items)
    tolerance = 2 * float_bounds.gamma(_FM_DEPTH) * (np.abs(before.numpy()) + 0.05 * grad_abs)
    difference = np.abs(model._model.table.detach().numpy() - (before - 0.05 * dense).numpy())
    assert (difference <= tolerance).all()


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_training_lowers_loss_and_beats_popularity(loss, tiny, tiny_features):
    # tiny_features are random (pure noise), so learning is checked on ids only here...
    model = FactorizationMachine(latent_dim=16, loss=loss, epochs=20, batch_size=64)
    epochs_seen = []
    _fit(model, tiny, on_epoch=epochs_seen.append)
    assert epochs_seen == list(range(1, 21))
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]
    popularity = Popularity().fit(tiny.train, rng=np.random.default_rng(0))
    assert _auc(model, tiny) > _auc(popularity, tiny) + 0.08
    # ... and with the noise features the training loss still falls.
    noisy = _fit(
        FactorizationMachine(latent_dim=16, loss=loss, epochs=20, batch_size=64),
        tiny,
        features=tiny_features,
    )
    assert noisy.loss_history_[-1] < 0.8 * noisy.loss_history_[0]


def _cold_start_data():
    """40 users in 4 groups like 6 random warm items of their group's kind; 4 cold items.

    Item ``i`` has kind ``i % 4``; the last 4 items (one per kind) have no
    train positive at all, so only the item side features say who likes them.
    """
    gen = np.random.default_rng(0)
    num_users = num_items = 40
    groups, kinds = np.arange(num_users) % 4, np.arange(num_items) % 4
    users, items = [], []
    for user in range(num_users):
        warm = np.flatnonzero(kinds[: num_items - 4] == groups[user])
        users += [user] * 6
        items += list(gen.choice(warm, size=6, replace=False))
    train = Interactions(np.array(users), np.array(items), num_users, num_items)

    def one_hot(codes, prefix):
        n = codes.shape[0]
        matrix = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, 4))
        return SideFeatures(matrix, tuple(f"{prefix}={g}" for g in range(4)))

    return train, (one_hot(groups, "group"), one_hot(kinds, "kind")), groups


@pytest.mark.parametrize(
    ("params", "expect_features_work"),
    [({}, True), ({"use_user_features": False}, True), ({"use_item_features": False}, False)],
)
def test_item_features_rank_cold_items(params, expect_features_work):
    """Known answer: only item features can rank an item that has no train positive."""
    train, features, groups = _cold_start_data()
    model = FactorizationMachine(latent_dim=8, epochs=30, batch_size=32, **params)
    model.fit(train, rng=np.random.default_rng(1), features=features)
    cold_scores = model.score(np.arange(train.num_users))[:, -4:]
    own = cold_scores[np.arange(train.num_users), groups]
    share = float(((own[:, None] > cold_scores).sum(1) == 3).mean())
    if expect_features_work:
        assert share >= 0.9
    else:
        assert share <= 0.5


@pytest.mark.parametrize("strategy", ["uniform-unseen", "popularity", "hard"])
def test_sampler_strategies_train(strategy, tiny, tiny_features):
    model = FactorizationMachine(latent_dim=8, epochs=2, negatives=strategy, batch_size=64)
    sampler = model.make_sampler(tiny.train)
    assert isinstance(sampler, NegativeSampler) and sampler.strategy == strategy
    _fit(model, tiny, features=tiny_features, sampler=sampler)
    assert np.isfinite(model.score(np.arange(tiny.num_users))).all()


def test_deterministic_and_global_torch_state_untouched(tiny, tiny_features):
    torch_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    a = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=4)
    b = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=4)
    c = _fit(FactorizationMachine(latent_dim=8, epochs=2), tiny, features=tiny_features, seed=5)
    users = np.arange(tiny.num_users)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    assert not np.allclose(a.score(users), c.score(users))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert torch.get_num_threads() == threads


class _RecordingSampler:
    """Wraps a sampler and records torch's thread count when an epoch is drawn."""

    def __init__(self, inner):
        self.inner = inner
        self.threads = []

    def sample(self, rng, score_pairs=None):
        self.threads.append(torch.get_num_threads())
        return self.inner.sample(rng, score_pairs=score_pairs)


@pytest.mark.parametrize("num_threads", [1, 2])
def test_num_threads_is_used_during_training(num_threads, tiny):
    model = FactorizationMachine(latent_dim=4, epochs=2, num_threads=num_threads)
    sampler = _RecordingSampler(model.make_sampler(tiny.train))
    before = torch.get_num_threads()
    _fit(model, tiny, sampler=sampler)
    assert sampler.threads == [num_threads, num_threads]
    assert torch.get_num_threads() == before


def test_score_mid_fit_tracks_training(tiny):
    model = FactorizationMachine(latent_dim=4, epochs=3)
    snapshots = []
    _fit(model, tiny, on_epoch=lambda epoch: snapshots.append(model.score(np.arange(3))))
    assert len(snapshots) == 3
    assert not np.allclose(snapshots[0], snapshots[2])
    np.testing.assert_array_equal(snapshots[2], model.score(np.arange(3)))


@pytest.mark.realdata
def test_fm_with_side_features_on_ua(ml100k):
    """FM with genres/decade and age/gender/occupation: AUC >= 0.90 on ``ua`` (0.923 measured)."""
    from bench.registry import default_registry

    model = default_registry().make("fm", "fast")
    assert model.use_user_features and model.use_item_features
    _fit(model, ml100k, features=(ml100k.user_features, ml100k.item_features))
    assert model._num_user_features == ml100k.user_features.num_features
    assert model._num_item_features == ml100k.item_features.num_features
    assert _auc(model, ml100k) >= 0.90


def test_fit_scaling_names_the_cost_of_each_update_rule():
    """Dense rules: whole-table steps; sparse rules: random row accesses (the benchmark's)."""
    for optimizer in ("adam", "adagrad"):
        assert (
            "every row of the weight tables"
            in FactorizationMachine(optimizer=optimizer).fit_scaling
        )
    lazy = FactorizationMachine(optimizer="lazy-adam").fit_scaling
    sgd = FactorizationMachine(optimizer="sgd").fit_scaling
    assert lazy.startswith("by memory") and "Adam's two moments" in lazy
    assert sgd.startswith("by memory") and "moments" not in sgd
    assert "benchmarks/test_bench_fm.py" in lazy
