"""The PyTorch triplet adapters: gradients against autograd, scoring, randomness, threads, data."""

from __future__ import annotations

import float_bounds
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.datasets.synthetic import synthetic  # noqa: E402
from bench.interactions import Interactions  # noqa: E402
from bench.registry import default_registry  # noqa: E402
from bench.sampler import NegativeSampler  # noqa: E402
from models.base import NotFittedError  # noqa: E402
from models.torch_triplet import TorchBilinear, TorchDeep  # noqa: E402

REGISTRY = default_registry()


# -- references ---------------------------------------------------------------
def _keras_normalize(x):
    """Keras's ``Dot(normalize=True)`` normalisation, written for autograd."""
    return x * torch.rsqrt(torch.clamp_min((x * x).sum(1, keepdim=True), 1e-14))


def _reference_objective(users, items, u_idx, p_idx, n_idx, *, similarity, margin, l2):
    """The batch objective the notebook's Keras model minimises, for autograd."""
    u, p, n = users[u_idx], items[p_idx], items[n_idx]
    if similarity == "cosine":
        u, p, n = _keras_normalize(u), _keras_normalize(p), _keras_normalize(n)
    hinge = torch.relu(margin + (u * n).sum(1) - (u * p).sum(1)).mean()
    return hinge + l2 * ((users**2).sum() + (items**2).sum())


def _built(model, num_users, num_items, seed=0):
    """A model with freshly initialised weights, as ``fit`` builds them (no training)."""
    model.validate_params()
    model._device = torch.device("cpu")
    model._generator = torch.Generator().manual_seed(seed)
    model._num_users, model._num_items = num_users, num_items
    model._build(num_users, num_items, model._generator)
    model._loss_sum = torch.zeros(())
    model._fitted = True
    return model


def _auc(model, data):
    from metrics import Evaluator, summarize

    evaluator = Evaluator(data.test.to_bool_csr(), data.exclusion("train-positives"), ks=(10,))
    return summarize(evaluator.evaluate(model))


# -- closed-form gradients -------------------------------------------------------
# Roundings on the longest chain of these small batch steps (d = 4 or 5, 10 triplets):
# norms and dots, the closed-form gradient, a row's sum over its uses, and the
# whole-table L2 sum (80 squares); 128 bounds it.
_SMALL_STEP_DEPTH = 128


def _step_bounds(users, items, u_idx, p_idx, n_idx, *, similarity, margin, l2):
    """Bounds on how far two float32 evaluations of one batch of `_reference_objective`
    (closed form, autograd) can differ: ``(users, items, loss)``, float64.

    Each gradient entry is within gamma(_SMALL_STEP_DEPTH) times its |.|-computation of
    the exact one (tests/float_bounds.py), and so is the loss; no hinge may lie within
    rounding of 0, where the two could gate it differently (checked here).
    """
    gamma = float_bounds.gamma(_SMALL_STEP_DEPTH)
    users, items = (np.asarray(t, np.float64) for t in (users, items))
    u_idx, p_idx, n_idx = (np.asarray(x) for x in (u_idx, p_idx, n_idx))
    hinge, hinge_abs, grad_users, grad_items = float_bounds.triplet_hinge_step(
        users, items, u_idx, p_idx, n_idx, margin=margin, cosine=similarity == "cosine"
    )
    # A positive that is also the negative: two identical dot products, hinge = margin.
    assert ((np.abs(hinge) > 2 * gamma * hinge_abs) | (p_idx == n_idx)).all()
    grad_users += 2 * l2 * np.abs(users)
    grad_items += 2 * l2 * np.abs(items)
    penalty = l2 * ((users**2).sum() + (items**2).sum())
    loss = hinge_abs.mean() + 2 * penalty  # the test subtracts the penalty again
    return 2 * gamma * grad_users, 2 * gamma * grad_items, 2 * gamma * loss


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("l2", [0.0, 1e-2])
def test_bilinear_sgd_step_equals_autograd(similarity, l2):
    gen = torch.Generator().manual_seed(1)
    num_users, num_items, dim, lr, margin = 7, 9, 5, 0.3, 0.5
    model = _built(
        TorchBilinear(
            latent_dim=dim,
            similarity=similarity,
            optimizer="sgd",
            learning_rate=lr,
            l2_reg=l2,
            margin=margin,
        ),
        num_users,
        num_items,
    )
    users = torch.randn(num_users, dim, generator=gen)
    items = torch.randn(num_items, dim, generator=gen)
    items[3] = 1e-9  # below Keras's norm cap: scaled by a constant, no projection term
    # Repeated users and items, a positive that is also a negative, and some
    # triplets whose hinge is inactive.
    u_idx = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 6, 2])
    p_idx = torch.tensor([1, 2, 3, 3, 4, 5, 6, 7, 8, 8])
    n_idx = torch.tensor([2, 1, 0, 3, 8, 8, 6, 0, 3, 1])
    model._user_table.copy_(users)
    model._item_table.copy_(items)

    ref_users, ref_items = users.clone().requires_grad_(), items.clone().requires_grad_()
    objective = _reference_objective(
        ref_users, ref_items, u_idx, p_idx, n_idx, similarity=similarity, margin=margin, l2=l2
    )
    objective.backward()
    hinges = objective.detach() - l2 * ((users**2).sum() + (items**2).sum())
    assert 0 < float(hinges) < 2 * margin + 2  # some active, some not: a real test

    model._train_batch(u_idx, p_idx, n_idx)
    model._fold_decay()  # the lazy L2 decay's scale into the tables
    # The closed form and autograd round differently (and by CPU): their gradients
    # differ by at most `_step_bounds`; w - lr g then rounds each entry a few times
    # (the lazy decay's scale, the scatter, the fold), within gamma |w| each way.
    grad_users, grad_items, loss = _step_bounds(
        users, items, u_idx, p_idx, n_idx, similarity=similarity, margin=margin, l2=l2
    )
    gamma = float_bounds.gamma(_SMALL_STEP_DEPTH)
    for table, start, grad, bound in (
        (model._user_table, users, ref_users.grad, grad_users),
        (model._item_table, items, ref_items.grad, grad_items),
    ):
        expected = (start - lr * grad).numpy()
        tolerance = lr * bound + 2 * gamma * (np.abs(start.numpy()) + np.abs(expected))
        assert (np.abs(table.numpy() - expected) <= tolerance).all()
    assert abs(float(model._loss_sum) - float(hinges)) <= loss


def _float64_sgd_model(lazy, *, lr, l2, tables=None):
    """A float64 TorchBilinear for plain SGD with lazy or eager decay, at ``tables``."""
    model = TorchBilinear(latent_dim=6, optimizer="sgd", learning_rate=lr, l2_reg=l2)
    model.lazy_decay = lazy
    model = _built(model, 11, 13)
    if tables is None:
        gen = torch.Generator().manual_seed(3)
        tables = [torch.randn(rows, 6, generator=gen, dtype=torch.float64) for rows in (11, 13)]
    model._user_table, model._item_table = (t.clone() for t in tables)
    model._loss_sum = torch.zeros((), dtype=torch.float64)
    return model


@pytest.mark.parametrize("lr, l2", [(0.5, 1e-2), (2.0, 0.1)])
def test_lazy_sgd_decay_equals_decaying_whole_tables(lr, l2):
    # (2.0, 0.1): factor 0.6 per batch, so the scale crosses the fold threshold
    # (2**-20) every 28 batches and is folded in mid-run.
    # The two formulations round differently, so they are compared batch by batch:
    # an eager step from the lazy model's true tables s V against the lazy step.
    # In float64 each gradient entry is within gamma(64) (d = 6, 8 triplets) of its
    # |.|-computation G of the exact one (tests/float_bounds.py, with 2 l2 |W| for
    # the decay), and the step, the scale and the fold round each entry a few times:
    # 2 gamma (2 lr G + 2 |W|) apart, while no hinge lies within rounding of 0.
    gen = torch.Generator().manual_seed(4)
    gamma = float_bounds.gamma(64, np.float64)
    lazy = _float64_sgd_model(True, lr=lr, l2=l2)
    start = lazy._item_table.clone()
    folds = 0
    for _ in range(60):
        u_idx, p_idx, n_idx = (torch.randint(rows, (8,), generator=gen) for rows in (11, 13, 13))
        scale = lazy._decay_scale
        true = [lazy._user_table * scale, lazy._item_table * scale]
        eager = _float64_sgd_model(False, lr=lr, l2=l2, tables=true)
        hinge, hinge_abs, grad_users, grad_items = float_bounds.triplet_hinge_step(
            *(t.numpy() for t in true), u_idx.numpy(), p_idx.numpy(), n_idx.numpy(),
            margin=1.0, cosine=True,
        )  # fmt: skip
        assert ((np.abs(hinge) > 2 * gamma * hinge_abs) | (p_idx == n_idx).numpy()).all()
        lazy._loss_sum.zero_()
        lazy._train_batch(u_idx, p_idx, n_idx)
        eager._train_batch(u_idx, p_idx, n_idx)
        folds += lazy._decay_scale == 1.0
        assert eager._decay_scale == 1.0
        for ours, theirs, before, grad in (
            (lazy._user_table, eager._user_table, true[0], grad_users),
            (lazy._item_table, eager._item_table, true[1], grad_items),
        ):
            ours = (ours * lazy._decay_scale).numpy()
            g = grad + 2 * l2 * np.abs(before.numpy())
            tolerance = 2 * gamma * (2 * lr * g + 2 * np.abs(before.numpy()))
            assert (np.abs(ours - theirs.numpy()) <= tolerance).all()
        loss_bound = 2 * gamma * (hinge_abs * (hinge > 0)).mean()
        assert abs(float(lazy._loss_sum) - float(eager._loss_sum)) <= loss_bound
    assert folds == (2 if l2 == 0.1 else 0)  # after batches 28 and 56
    lazy._fold_decay()
    assert float((lazy._item_table - start).abs().max()) > 1e-3  # the steps moved the items


def test_lazy_sgd_decay_touches_only_the_batch_rows():
    model = _built(
        TorchBilinear(latent_dim=4, optimizer="sgd", learning_rate=1.0, l2_reg=0.01), 6, 7
    )
    before_users, before_items = model._user_table.clone(), model._item_table.clone()
    model._train_batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 4]))
    assert model._decay_scale == pytest.approx(1 - 2 * 1.0 * 0.01)
    assert torch.equal(model._user_table[2:], before_users[2:])  # stored rows, bit for bit
    assert torch.equal(model._item_table[[0, 1, 5, 6]], before_items[[0, 1, 5, 6]])
    assert not torch.equal(model._user_table[:2], before_users[:2])
    model._fold_decay()  # then every row carries the decay
    torch.testing.assert_close(model._user_table[2:], before_users[2:] * 0.98)


def _triplet_epoch(num_users, num_items, n, seed):
    """Random triplets with repeated users and items (int32, as the sampler's)."""
    from bench.sampler import Triplets

    rng = np.random.default_rng(seed)
    return Triplets(
        rng.integers(0, num_users, n, dtype=np.int32),
        rng.integers(0, num_items, n, dtype=np.int32),
        rng.integers(0, num_items, n, dtype=np.int32),
    )


# Roundings on the longest chain of one compiled or torch SGD batch step at d = 6:
# norms and dots (6 terms), the closed-form gradient (a few products), the scale
# factors, and a row's sum over its <= 2 x 16 uses in the batch; 64 bounds it.
_SGD_STEP_DEPTH = 64


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize(
    "lr, l2",
    # (2.0, 0.1): factor 0.6 per batch, folded in mid-epoch; (50, 1e-6): the fast preset.
    [(0.5, 0.0), (50.0, 1e-6), (2.0, 0.1)],
)
def test_compiled_sgd_epoch_matches_the_torch_step(similarity, lr, l2):
    # Two epochs of 203 triplets in batches of 16: a short last batch, rows repeated
    # within batches. The numba loop and the torch ops sum in different orders (and
    # torch's vector width depends on the CPU), and over many batches hinges and lr
    # up to 50 amplify that without bound; so they are compared batch by batch from
    # the same state (the torch one): the same loss, lazy scale and tables up to
    # rounding. Bounds (tests/float_bounds.py): the gradient entry's float32 error is
    # <= gamma(_SGD_STEP_DEPTH) times its |.|-computation G; the stored-table step is
    # -lr G / s (s the new lazy scale), and adding it rounds the entry once per use:
    # two paths differ by <= 2 gamma (2 lr G / |s| + |stored|), while no hinge lies
    # within rounding of 0 (checked). That the compiled epoch is its batches run one
    # after another is exact: the same kernel and arithmetic, compared bit for bit.
    from models import _bilinear_compiled as compiled
    from models.torch_triplet import _LAZY_FOLD_BELOW, _NORM_EPSILON

    params = {"latent_dim": 6, "similarity": similarity, "learning_rate": lr, "l2_reg": l2,
              "batch_size": 16, "margin": 0.5, "optimizer": "sgd"}  # fmt: skip
    model = _built(TorchBilinear(**params), 17, 19)
    model._item_table[3] = 1e-9  # below the norm cap: scaled by a constant, no projection
    start = model._item_table.numpy().copy()
    decay, lazy = model._sgd_decay()
    assert lazy
    kernel_model = (similarity == "cosine", 0.5, _NORM_EPSILON)
    steps = np.zeros((3, 16, 6), np.float32)
    gamma = float_bounds.gamma(_SGD_STEP_DEPTH)
    for epoch in range(2):
        triplets = _triplet_epoch(17, 19, 203, 5 + epoch)
        ids = tuple(
            np.ascontiguousarray(x, dtype=np.int64)
            for x in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids)
        )
        whole = [model._user_table.numpy().copy(), model._item_table.numpy().copy()]
        rule = (lr, decay, model._decay_scale, _LAZY_FOLD_BELOW)
        whole_out = compiled.sgd_epoch(*whole, ids, 16, kernel_model, rule, steps, 0)
        by_batch, scale_in, loss_sum = None, model._decay_scale, 0.0
        for first in range(0, 203, 16):
            batch = tuple(x[first : first + 16] for x in ids)
            stored = [model._user_table.numpy().copy(), model._item_table.numpy().copy()]
            scale = model._decay_scale
            true = [table.astype(np.float64) * scale for table in stored]
            hinge, hinge_abs, *grads_abs = float_bounds.triplet_hinge_step(
                *true, *batch, margin=0.5, cosine=similarity == "cosine"
            )
            # (A positive that is also the negative has hinge = margin exactly: two
            # identical dot products.)
            clear = (np.abs(hinge) > 2 * gamma * hinge_abs) | (batch[1] == batch[2])
            assert clear.all(), "a hinge is within rounding of 0: pick other triplets"
            # The compiled step from the torch state ...
            ours = [table.copy() for table in stored]
            loss, _, new_scale = compiled.sgd_epoch(
                *ours, batch, 16, kernel_model, (lr, decay, scale, _LAZY_FOLD_BELOW), steps, 0
            )
            # ... and the torch step.
            model._loss_sum = torch.zeros(())
            model._train_batch(*(torch.from_numpy(x) for x in batch))
            assert new_scale == model._decay_scale  # the same float64 arithmetic
            folded = new_scale == 1.0 and scale * decay != 1.0
            step_scale = lr / abs(scale * decay)
            loss_bound = 2 * gamma * (hinge_abs * (hinge > 0)).mean()
            assert abs(loss - float(model._loss_sum)) <= loss_bound
            for before, after, theirs, grad_abs in zip(
                stored, ours, (model._user_table.numpy(), model._item_table.numpy()), grads_abs
            ):
                tolerance = 2 * gamma * (2 * step_scale * grad_abs + np.abs(before))
                if folded:  # both multiplied by the old scale times decay, then rounded
                    tolerance = tolerance * abs(scale * decay) + 2 * gamma * np.abs(after)
                assert (np.abs(after - theirs) <= tolerance).all()
            # The compiled epoch equals its batches, from the same compiled state.
            if by_batch is None:
                by_batch = [table.copy() for table in stored]
            rule = (lr, decay, scale_in, _LAZY_FOLD_BELOW)
            part, _, scale_in = compiled.sgd_epoch(
                *by_batch, batch, 16, kernel_model, rule, steps, 0
            )
            loss_sum += part
        assert whole_out == (loss_sum, 13, scale_in)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(whole, by_batch))
        model._fold_decay()  # as the epoch's end does
    assert np.abs(model._item_table.numpy() - start).max() > 1e-2  # it trained


def test_compiled_sgd_epoch_prefetch_changes_no_value():
    """Prefetching is a hint: 0, 1, 8 or 500 triplets ahead give the same bytes."""
    from models import _bilinear_compiled as compiled

    triplets = _triplet_epoch(17, 19, 203, 0)
    ids = tuple(np.ascontiguousarray(x, dtype=np.int64) for x in vars(triplets).values())
    # The last row of each table is among the ids: the farthest prefetch stays inside.
    ids[0][-1], ids[1][-1], ids[2][0] = 16, 18, 18
    results = []
    for ahead in (0, 1, 8, 500):
        model = _built(TorchBilinear(latent_dim=5, batch_size=16, l2_reg=0.1, learning_rate=2.0),
                       17, 19)  # fmt: skip
        users, items = model._user_table.numpy(), model._item_table.numpy()
        steps = np.zeros((3, 16, 5), np.float32)
        out = compiled.sgd_epoch(users, items, ids, 16, (True, 1.0, 1e-7),
                                 (2.0, 0.6, 1.0, 2.0**-20), steps, ahead)  # fmt: skip
        results.append((users.tobytes(), items.tobytes(), out))
    assert all(result == results[0] for result in results[1:])


def test_compiled_step_runs_only_where_it_is_the_same_update(tiny):
    def uses(**params):
        model = _built(TorchBilinear(**params), 5, 6)
        return model._uses_compiled_step()

    assert uses()  # the fast preset: SGD, lazy decay, CPU
    assert uses(l2_reg=0.0)
    assert not uses(optimizer="adam")
    assert not uses(learning_rate=2.0, l2_reg=0.2)  # decay 0.2 per batch: applied eagerly
    eager = TorchBilinear()
    eager.lazy_decay = False
    assert not _built(eager, 5, 6)._uses_compiled_step()


def test_warm_up_loads_the_compiled_epoch_every_sgd_fit_calls(tiny, rng):
    """After ``warm_up`` no fit compiles: the kernel's signature set stays the same."""
    from models import _bilinear_compiled as compiled

    TorchBilinear().warm_up()
    ready = set(compiled.sgd_epoch.signatures)
    assert ready
    for similarity in ("cosine", "dot"):
        TorchBilinear(latent_dim=4, epochs=1, similarity=similarity).fit(tiny.train, rng=rng)
    assert set(compiled.sgd_epoch.signatures) == ready


def test_bilinear_adam_first_step_is_keras_adam():
    # Keras's Adam, first step: m = 0.1 g, v = 0.001 g^2,
    # alpha = lr sqrt(1 - 0.999) / (1 - 0.9), update = alpha m / (sqrt(v) + 1e-7).
    gen = torch.Generator().manual_seed(2)
    lr, l2 = 0.01, 1e-3
    model = _built(TorchBilinear(latent_dim=4, optimizer="adam", learning_rate=lr, l2_reg=l2), 5, 6)
    users, items = torch.randn(5, 4, generator=gen), torch.randn(6, 4, generator=gen)
    model._user_table.copy_(users)
    model._item_table.copy_(items)
    u_idx, p_idx, n_idx = torch.tensor([0, 1, 4]), torch.tensor([2, 3, 5]), torch.tensor([5, 0, 2])
    ref_users, ref_items = users.clone().requires_grad_(), items.clone().requires_grad_()
    _reference_objective(
        ref_users, ref_items, u_idx, p_idx, n_idx, similarity="cosine", margin=1.0, l2=l2
    ).backward()
    alpha = lr * np.sqrt(1 - 0.999) / (1 - 0.9)
    model._train_batch(u_idx, p_idx, n_idx)
    # The closed-form and autograd gradients differ by at most `_step_bounds`; the
    # first step is lr g / (|g| + c) with c = 1e-7 / sqrt(0.001), whose slope
    # c / (|g| + c)**2 is largest at the smallest |g| between the two gradients, so
    # an entry whose gradient is within rounding of 0 may move anywhere in
    # [-lr, lr]: the bound says so rather than assume it away. Then a few roundings
    # of the weight and of the step's arithmetic.
    bounds = _step_bounds(users, items, u_idx, p_idx, n_idx, similarity="cosine", margin=1.0, l2=l2)
    c = 1e-7 / np.sqrt(0.001)
    gamma = float_bounds.gamma(_SMALL_STEP_DEPTH)
    for table, start, grad, bound in (
        (model._user_table, users, ref_users.grad, bounds[0]),
        (model._item_table, items, ref_items.grad, bounds[1]),
    ):
        expected = (start - alpha * (0.1 * grad) / (torch.sqrt(0.001 * grad**2) + 1e-7)).numpy()
        nearest = np.maximum(np.abs(grad.numpy()) - bound, 0)
        tolerance = lr * c * bound / (nearest + c) ** 2
        tolerance += 2 * gamma * (np.abs(start.numpy()) + lr)
        assert (np.abs(table.numpy() - expected) <= tolerance).all()
        assert tolerance.max() < lr / 100  # no gradient here is near 0: a real comparison


# -- scoring ---------------------------------------------------------------------
def test_bilinear_score_is_cosine_of_the_tables(tiny, rng):
    model = TorchBilinear(epochs=1).fit(tiny.train, rng=rng)
    users, items = model.embeddings()
    expected = (users / np.linalg.norm(users, axis=1, keepdims=True)) @ (
        items / np.linalg.norm(items, axis=1, keepdims=True)
    ).T
    # torch's normalisation and matmul against numpy's: each within gamma(n) of the
    # exact cosine times its |.|-computation sum_j |u^_j| |v^_j| <= 1, n the roundings
    # of a norm (64 squares), a rescale and a dot product (64 terms).
    unit_users, unit_items = (
        np.abs(x / np.linalg.norm(x, axis=1, keepdims=True)) for x in (users, items)
    )
    tolerance = 2 * float_bounds.gamma(2 * users.shape[1] + 4) * (unit_users @ unit_items.T)
    assert (np.abs(model.score(np.arange(tiny.num_users)) - expected) <= tolerance).all()
    # A block normalises only its own user rows: the same bytes as normalising the
    # whole user table first (the way scoring did before), then taking the rows.
    from models.torch_triplet import _normalize

    block = np.array([5, 0, 3, 3])
    whole = _normalize(torch.from_numpy(users))[torch.from_numpy(block)]
    before = (whole @ _normalize(torch.from_numpy(items)).T).numpy()
    assert model.score(block).tobytes() == before.tobytes()


@pytest.mark.parametrize("n_hidden", [0, 1, 2])
def test_deep_score_matches_the_mlp_on_every_pair(n_hidden, tiny, rng):
    model = TorchDeep(
        n_hidden=n_hidden, hidden_size=16, epochs=1, batch_size=64, learning_rate=0.01
    ).fit(tiny.train, rng=rng)
    user_ids = np.array([3, 0, 59, 3])
    users = torch.tensor(np.repeat(user_ids, tiny.num_items))
    items = torch.tensor(np.tile(np.arange(tiny.num_items), user_ids.size))
    with torch.no_grad():
        brute = model._pair_similarity(users, items).numpy().reshape(user_ids.size, -1)
    scores = model.score(user_ids)
    # The block scorer splits the first layer (U W_u + (I W_i + b)) and runs other
    # matmul shapes: each is within gamma(n) of the exact MLP output times its
    # |.|-computation (tests/float_bounds.py).
    pairs = torch.cat([model._user_table[users], model._item_table[items]], dim=1)
    layers = [
        (k.detach().numpy(), b.detach().numpy()) for k, b in zip(model._kernels, model._biases)
    ]
    magnitude, depth = float_bounds.mlp_abs(pairs.detach().numpy(), layers)
    tolerance = 2 * float_bounds.gamma(depth + 1) * magnitude[:, 0]
    assert (np.abs(scores - brute).ravel() <= tolerance).all()
    assert np.ptp(scores) > 0  # trained: not a constant (dead) output everywhere


def test_deep_dropout_masks_have_the_requested_rate():
    model = _built(TorchDeep(user_dim=8, item_dim=8, hidden_size=16, dropout=0.3), 4, 4)
    scales = model._dropout_scales(5000)
    assert [tuple(s.shape) for s in scales] == [(5000, 16), (5000, 16)]
    values = torch.cat([s.ravel() for s in scales])
    kept = values > 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005
    torch.testing.assert_close(
        values[kept], torch.full_like(values[kept], 1 / 0.7), rtol=1e-4, atol=0
    )
    assert abs(float(values.mean()) - 1.0) < 0.01  # inverted dropout keeps expectations


# -- parameters ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (TorchBilinear, "latent_dim", 0),
        (TorchBilinear, "similarity", "euclidean"),
        (TorchBilinear, "margin", -0.5),
        (TorchBilinear, "l2_reg", -1e-6),
        (TorchBilinear, "learning_rate", 0.0),
        (TorchBilinear, "batch_size", 0),
        (TorchBilinear, "optimizer", "nadam"),
        (TorchBilinear, "negatives", "hardest"),
        (TorchBilinear, "hard_candidates", 0),
        (TorchBilinear, "num_threads", 0),
        (TorchBilinear, "device", "tpu"),
        (TorchBilinear, "epochs", 1.5),
        (TorchDeep, "user_dim", -3),
        (TorchDeep, "n_hidden", -1),
        (TorchDeep, "hidden_size", 0),
        (TorchDeep, "dropout", 1.0),
        (TorchDeep, "dropout", -0.1),
    ],
)
def test_impossible_parameters_raise_naming_the_value(cls, name, value, tiny, rng):
    model = cls(**{name: value})
    with pytest.raises(ValueError, match=name if name != "negatives" else "negatives"):
        model.fit(tiny.train, rng=rng)
    assert getattr(model, name) == value  # stored unchanged


def test_cuda_device_is_rejected_clearly_without_cuda(tiny, rng):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        TorchBilinear(device="cuda").fit(tiny.train, rng=rng)


def test_score_before_fit_and_bad_inputs_raise(tiny, rng):
    model = TorchBilinear(epochs=1)
    with pytest.raises(NotFittedError):
        model.score(np.array([0]))
    with pytest.raises(TypeError, match="Generator"):
        model.fit(tiny.train, rng=0)
    model.fit(tiny.train, rng=rng)
    with pytest.raises(ValueError, match="user_ids"):
        model.score(np.array([-1]))


# -- randomness and threads ---------------------------------------------------------------
@pytest.mark.parametrize("cls", [TorchBilinear, TorchDeep])
def test_seed_decides_weights_and_global_torch_rng_is_untouched(cls, tiny):
    state = torch.random.get_rng_state()
    first = cls(epochs=2, batch_size=128).fit(tiny.train, rng=np.random.default_rng(1))
    same = cls(epochs=2, batch_size=128).fit(tiny.train, rng=np.random.default_rng(1))
    other = cls(epochs=2, batch_size=128).fit(tiny.train, rng=np.random.default_rng(2))
    users = np.arange(tiny.num_users)
    np.testing.assert_array_equal(first.score(users), same.score(users))
    assert not np.allclose(first.score(users), other.score(users))
    assert torch.equal(torch.random.get_rng_state(), state)


class _RecordingSampler:
    """Wraps a sampler and records torch's thread count whenever an epoch is drawn."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.num_items = sampler.num_items
        self.threads = []

    def sample(self, rng, score_pairs=None):
        self.threads.append(torch.get_num_threads())
        return self.sampler.sample(rng, score_pairs=score_pairs)


def test_num_threads_applies_during_fit_and_is_restored(tiny, rng):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    model = TorchBilinear(epochs=2, num_threads=wanted)
    sampler = _RecordingSampler(model.make_sampler(tiny.train))
    seen_in_callback = []
    model.fit(
        tiny.train,
        sampler=sampler,
        rng=rng,
        on_epoch=lambda epoch: seen_in_callback.append(torch.get_num_threads()),
    )
    assert sampler.threads == [wanted, wanted]
    assert seen_in_callback == [before, before]  # the runner's evaluation is not throttled
    model.score(np.arange(5))
    assert torch.get_num_threads() == before


def test_hard_negatives_use_the_model_similarity(tiny, rng):
    calls = []
    model = TorchBilinear(epochs=2, negatives="hard", hard_candidates=5)
    sampler = model.make_sampler(tiny.train)
    original = model._score_pairs

    def spy(user_ids, item_ids):
        sims = original(user_ids, item_ids)
        calls.append(sims)
        return sims

    model._score_pairs = spy
    model.fit(tiny.train, sampler=sampler, rng=rng)
    assert len(calls) == 4  # candidates and positives, each epoch
    candidates, positives = calls[2], calls[3]
    assert candidates.shape == (5 * len(tiny.train),) and positives.shape == (len(tiny.train),)
    assert np.all(np.abs(candidates) <= 1 + 1e-5)  # cosine similarities
    assert np.ptp(candidates) > 0.1  # from trained embeddings, not constants


# -- learning ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def structured():
    """Synthetic data with low-rank taste: personal models beat popularity here."""
    return synthetic(num_users=200, num_items=300, num_positives=6000, test_per_user=3, seed=1)


def test_models_learn_the_synthetic_taste_structure(structured):
    from models.baselines import Popularity

    rng = np.random.default_rng(0)
    popularity = _auc(Popularity().fit(structured.train, rng=rng), structured)["auc"]
    bilinear = _auc(TorchBilinear().fit(structured.train, rng=rng), structured)["auc"]
    dot = TorchBilinear(
        similarity="dot", optimizer="adam", learning_rate=0.01, batch_size=128, epochs=10
    )
    dot_auc = _auc(dot.fit(structured.train, rng=rng), structured)["auc"]
    deep = TorchDeep(batch_size=64, learning_rate=0.003, epochs=15)
    deep_auc = _auc(deep.fit(structured.train, rng=rng), structured)["auc"]
    assert 0.65 < popularity < 0.75
    assert bilinear > popularity + 0.1
    assert dot_auc > popularity + 0.1
    assert deep_auc > popularity + 0.03


def test_epoch_loss_decreases(structured, rng):
    model = TorchBilinear(epochs=6).fit(structured.train, rng=rng)
    losses = model.loss_history_
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]


def test_sampler_on_another_catalogue_is_rejected(tiny, rng):
    other = Interactions([0, 1], [0, 1], num_users=2, num_items=3)
    with pytest.raises(ValueError, match="items"):
        TorchBilinear().fit(tiny.train, sampler=NegativeSampler(other), rng=rng)


class _FixedTriplets:
    """A sampler that yields the same triplets every epoch."""

    def __init__(self, triplets, num_items):
        self.triplets, self.num_items = triplets, num_items

    def sample(self, rng, score_pairs=None):
        return self.triplets


def _head(triplets, n):
    from bench.sampler import Triplets

    return Triplets(triplets.user_ids[:n], triplets.pos_item_ids[:n], triplets.neg_item_ids[:n])


def _first_sgd_step(cls, data, device, batch):
    """Initial and trained weights (float32 numpy) of one SGD batch on ``device``."""
    params = {"optimizer": "sgd", "learning_rate": 0.5, "batch_size": 64, "l2_reg": 0.0}
    if cls is TorchDeep:
        params["dropout"] = 0.0
    weights = []
    for triplets in (_head(batch, 0), batch):
        model = cls(device=device, epochs=1, **params).fit(
            data.train,
            sampler=_FixedTriplets(triplets, data.num_items),
            rng=np.random.default_rng(5),
        )
        weights.append([w.detach().cpu().numpy() for w in model._weights().values()])
    return weights


def _first_sgd_step_tolerance(cls, start, batch, lr=0.5, margin=1.0):
    """How far two devices' first SGD steps from ``start`` can be apart, per weight entry.

    Each gradient entry is within gamma(512) times its |.|-computation G of the exact
    one (tests/float_bounds.py; 512 bounds the roundings of 64-term norms and dots or
    the MLP's 96 + 128 terms, both ways, plus a row's uses in the batch), apart from
    terms F through a gate within rounding of 0, which one device may drop; w - lr g
    adds a rounding per use of the row: 2 gamma (2 lr G + |w|) + lr F.
    """
    gamma = float_bounds.gamma(512)
    users, pos, neg = batch.user_ids, batch.pos_item_ids, batch.neg_item_ids
    if cls is TorchBilinear:
        hinge, hinge_abs, *grads = float_bounds.triplet_hinge_step(
            *start, users, pos, neg, margin=margin, cosine=True
        )
        assert ((np.abs(hinge) > 2 * gamma * hinge_abs) | (pos == neg)).all()
        flips = [np.zeros_like(g) for g in grads]
    else:
        pairs = np.hstack([np.vstack([start[0][users]] * 2), start[1][np.concatenate([pos, neg])]])
        layers = list(zip(start[2::2], start[3::2]))
        _, _, grad_pairs, flip_pairs, grad_layers, flip_layers = float_bounds.mlp_hinge_step(
            pairs, layers, margin=margin
        )
        grads, flips = [], []
        for by_pair, by_layer, out in (
            (grad_pairs, grad_layers, grads),
            (flip_pairs, flip_layers, flips),
        ):
            tables = [np.zeros_like(start[0], np.float64), np.zeros_like(start[1], np.float64)]
            user_dim = start[0].shape[1]
            np.add.at(tables[0], np.concatenate([users, users]), by_pair[:, :user_dim])
            np.add.at(tables[1], np.concatenate([pos, neg]), by_pair[:, user_dim:])
            out += tables + [g for layer in by_layer for g in layer]
    return [
        2 * gamma * (2 * lr * g.reshape(w.shape) + np.abs(w)) + lr * f.reshape(w.shape)
        for w, g, f in zip(start, grads, flips)
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [TorchBilinear, TorchDeep])
def test_cuda_matches_cpu(cls, tiny):
    # CUDA and CPU kernels round differently, and training compounds it: compared over
    # one SGD batch from the same initial weights (a CPU generator draws them for any
    # device), within the rounding bound of that step.
    # (Seed 2: a batch with no hinge or output unit within rounding of 0.)
    triplets = NegativeSampler(tiny.train).sample(np.random.default_rng(2))
    batch = _head(triplets, 64)
    (start, cpu), (cuda_start, cuda) = (
        _first_sgd_step(cls, tiny, d, batch) for d in ("cpu", "cuda")
    )
    assert all(a.tobytes() == b.tobytes() for a, b in zip(start, cuda_start))
    tolerances = _first_sgd_step_tolerance(cls, start, batch)
    for ours, theirs, before, tolerance in zip(cpu, cuda, start, tolerances):
        assert (np.abs(ours - theirs) <= tolerance).all()
        assert tolerance.max() < 0.1 * np.abs(ours - before).max()  # a real comparison


# -- real data ------------------------------------------------------------------------
def _fit_preset(name, preset, data, seed=0):
    model = REGISTRY.make(name, preset)
    return model.fit(data.train, rng=np.random.default_rng(seed))


@pytest.mark.realdata
def test_bilinear_fast_preset_on_movielens(ml100k):
    summary = _auc(_fit_preset("torch-bilinear", "fast", ml100k), ml100k)
    assert summary["auc"] >= 0.92
    assert summary["precision@10"] > 0.08


@pytest.mark.realdata
@pytest.mark.xdist_group("ml100k-fits")
def test_bilinear_notebook_preset_reproduces_the_published_auc(ml100k, ml100k_fit):
    # PROTOCOL.md: the notebook's bilinear model reaches 0.919 - 0.922 at epoch 10.
    summary = _auc(ml100k_fit("torch-bilinear", "notebook", seed=0), ml100k)
    assert 0.91 <= summary["auc"] <= 0.93


@pytest.mark.realdata
@pytest.mark.slow
def test_deep_notebook_preset_reaches_the_notebook_target(ml100k):
    # The notebook asks the deep model for at least 0.91 by epoch 20 (published: 0.89
    # at epoch 10). As the Keras test: evaluate from epoch 12 on, stop once it is met.
    model = REGISTRY.make("torch-deep", "notebook")
    assert model.epochs == 20
    history = {}

    class Reached(Exception):
        pass

    def check(epoch):
        if epoch >= 12:
            history[epoch] = _auc(model, ml100k)["auc"]
            if history[epoch] >= 0.91:
                raise Reached

    with pytest.raises(Reached):
        model.fit(ml100k.train, rng=np.random.default_rng(0), on_epoch=check)
    assert max(history) <= 20


@pytest.mark.realdata
def test_deep_fast_preset_on_movielens(ml100k):
    # About 6 s here; 0.918 - 0.921 over five seeds (the notebook preset: 0.918 in 13 s).
    summary = _auc(_fit_preset("torch-deep", "fast", ml100k), ml100k)
    assert summary["auc"] >= 0.91
