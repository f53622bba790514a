"""Compiled (numba) SGD epoch of the bilinear triplet model (``torch-bilinear``).

With plain SGD and lazy L2 decay, a PyTorch batch step of
:class:`models.torch_triplet.TorchBilinear` is about thirty tensor operations
on ``(batch, latent_dim)`` tensors: three gathers, three ``index_add_``
scatters and the closed-form gradient. At batch 1024 and 64 dimensions that is
about 0.75 ms a batch, most of it per-operation overhead and the scatters'
element-wise indexing, and at ML-20M shape the user table (35 MB) no longer
fits the CPU caches. :func:`sgd_epoch` runs the same epoch in one loop: the
same batches, the same closed-form gradient of the batch-mean margin loss
computed from the rows as they were before the batch's update, the steps
added to the tables in the same order (users, then positives, then negatives,
each in batch order), and the same lazy decay (one scale factor shared by
both tables, folded in below :data:`models.torch_triplet._LAZY_FOLD_BELOW`
and at the end of the epoch). Arithmetic is float32 as in the torch step; the
dot products sum in a different (fixed) order, so the two agree up to float32
rounding, which the tests check.

The tables are the adapter's torch tensors, read and written in place through
NumPy views, so the adapter keeps its PyTorch initialisation, scoring and
every other optimizer.
"""

from __future__ import annotations

import numba
import numpy as np

from models._prefetch import PREFETCH_AHEAD, prefetch_row

__all__ = ["PREFETCH_AHEAD", "sgd_epoch", "warm_up"]


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _dot(a, b, scale_a, scale_b):
    """``sum_j (scale_a a[j]) (scale_b b[j])`` in float32, four interleaved partial sums.

    The rows are scaled element by element first, as the torch step scales
    the gathered rows before its dot products. The order is fixed, so the
    result does not depend on the machine.
    """
    s0 = s1 = s2 = s3 = np.float32(0.0)
    k = a.shape[0]
    j = 0
    while j + 4 <= k:
        s0 += (scale_a * a[j]) * (scale_b * b[j])
        s1 += (scale_a * a[j + 1]) * (scale_b * b[j + 1])
        s2 += (scale_a * a[j + 2]) * (scale_b * b[j + 2])
        s3 += (scale_a * a[j + 3]) * (scale_b * b[j + 3])
        j += 4
    while j < k:
        s0 += (scale_a * a[j]) * (scale_b * b[j])
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _inverse_norm(square, epsilon):
    """``(1 / max(|x|, eps), |x| > eps)`` from ``|x|^2``, as ``torch_triplet._inverse_norms``."""
    floor = np.float32(epsilon * epsilon)
    above = square > floor
    return np.float32(1.0) / np.sqrt(max(square, floor)), np.float32(1.0 if above else 0.0)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _batch_steps(users, items, triplets, start, end, model, scale, step_scale, steps, ahead):
    """Each triplet's SGD step for its three rows into ``steps`` ``(3, batch, d)``; loss sum.

    ``model`` is ``(cosine, margin, epsilon)``; ``scale`` the lazy decay
    factor of the stored tables (true rows are ``scale`` times the stored
    ones) and ``step_scale`` the factor of the gradient (``-lr / new scale``).
    Every row is read before any is written, as in the batch step.
    """
    user_ids, pos_ids, neg_ids = triplets
    cosine, margin, epsilon = model
    w_on = np.float32(step_scale / (end - start))
    s = np.float32(scale)
    loss = np.float32(0.0)
    n_total = user_ids.shape[0]
    width = users.shape[1]
    for e in range(start, end):
        if ahead > 0 and e + ahead < n_total:  # the next batch's first rows too
            prefetch_row(users, user_ids[e + ahead])
            prefetch_row(items, pos_ids[e + ahead])
            prefetch_row(items, neg_ids[e + ahead])
        u, p, n = users[user_ids[e]], items[pos_ids[e]], items[neg_ids[e]]
        b = e - start
        step_u, step_p, step_n = steps[0, b], steps[1, b], steps[2, b]
        up = _dot(u, p, s, s)
        un = _dot(u, n, s, s)
        if cosine:
            inv_u, above_u = _inverse_norm(_dot(u, u, s, s), epsilon)
            inv_p, above_p = _inverse_norm(_dot(p, p, s, s), epsilon)
            inv_n, above_n = _inverse_norm(_dot(n, n, s, s), epsilon)
            sim_pos = up * inv_u * inv_p
            sim_neg = un * inv_u * inv_n
        else:
            sim_pos, sim_neg = up, un
        diff = sim_neg - sim_pos
        hinge = diff + np.float32(margin)
        if hinge <= 0:  # relu's derivative is 0 at 0, as the torch step's mask
            step_u[:] = 0.0
            step_p[:] = 0.0
            step_n[:] = 0.0
            continue
        loss += hinge
        w = w_on
        if not cosine:
            for j in range(width):
                uj = s * u[j]
                step_u[j] = (s * n[j] - s * p[j]) * w
                step_p[j] = uj * -w
                step_n[j] = uj * w
            continue
        a = w * inv_u
        a_n, a_p = a * inv_n, a * inv_p
        # Rows below the norm cap are scaled by a constant: no projection term.
        c_u = -(diff * a * inv_u * above_u)
        c_p = sim_pos * w * inv_p * inv_p * above_p
        c_n = -(sim_neg * w * inv_n * inv_n * above_n)
        for j in range(width):
            uj, pj, nj = s * u[j], s * p[j], s * n[j]
            step_u[j] = uj * c_u + nj * a_n - pj * a_p
            step_p[j] = pj * c_p - uj * a_p
            step_n[j] = nj * c_n + uj * a_n
    return loss


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _scatter(table, ids, start, end, steps):
    """``table[ids[start + b]] += steps[b]`` in batch order (``index_add_``'s order)."""
    width = table.shape[1]
    for e in range(start, end):
        row = table[ids[e]]
        step = steps[e - start]
        for j in range(width):
            row[j] += step[j]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def sgd_epoch(users, items, triplets, batch_size, model, rule, steps, ahead):
    """One SGD epoch over ``triplets``, tables updated in place: ``(loss sum, batches, scale)``.

    Parameters
    ----------
    users, items : float32 arrays, shape (num_users, d) and (num_items, d)
        The stored tables (true tables: ``scale`` times these).
    triplets : tuple of three int64 arrays
        User, positive and negative item ids, in training order.
    batch_size : int
    model : tuple
        ``(cosine, margin, epsilon)``: cosine (else dot) similarity, the loss
        margin and the norm cap of ``torch_triplet._inverse_norms``.
    rule : tuple
        ``(learning_rate, decay, scale, fold_below)``: SGD's rate, the L2
        decay ``1 - 2 lr l2_reg`` of every row per batch (1: none), the lazy
        scale factor on entry, and the magnitude below which the scale is
        folded into the tables (then it is 1 again).
    steps : float32 array, shape (3, batch_size, d)
        Scratch for the batch's steps.
    ahead : int
        Triplets between a row's prefetch and its use (0: no prefetching).

    Returns
    -------
    loss : float
        Sum over batches of the batch-mean margin loss.
    batches : int
    scale : float
        The lazy scale factor on exit (the caller folds it in at epoch end).
    """
    learning_rate, decay, scale, fold_below = rule
    n = triplets[0].shape[0]
    user_ids, pos_ids, neg_ids = triplets
    total = 0.0
    batches = 0
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        new_scale = scale * decay
        loss = _batch_steps(
            users, items, triplets, start, end, model, scale, -learning_rate / new_scale,
            steps, ahead,
        )  # fmt: skip
        _scatter(users, user_ids, start, end, steps[0])
        _scatter(items, pos_ids, start, end, steps[1])
        _scatter(items, neg_ids, start, end, steps[2])
        scale = new_scale
        if abs(scale) < fold_below:
            _fold(users, scale)
            _fold(items, scale)
            scale = 1.0
        total += float(loss) / (end - start)
        batches += 1
    return total, batches, scale


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _fold(table, scale):
    """``table *= scale`` in float32 (``torch.Tensor.mul_`` with a Python float)."""
    s = np.float32(scale)
    flat = table.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i] *= s


def warm_up() -> None:
    """Load (or compile) :func:`sgd_epoch` for both similarities, before any timing."""
    users = np.zeros((2, 4), np.float32)
    items = np.zeros((2, 4), np.float32)
    ids = np.zeros(2, np.int64)
    steps = np.zeros((3, 2, 4), np.float32)
    for cosine in (True, False):
        sgd_epoch(users, items, (ids, ids, ids), 2, (cosine, 1.0, 1e-7), (1.0, 1.0, 1.0, 0.5),
                  steps, PREFETCH_AHEAD)  # fmt: skip
