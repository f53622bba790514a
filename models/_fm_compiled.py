"""Compiled (numba) training step of the factorization machine on ids only.

With one-hot rows the FM is ``w0 + w_u + w_i + <v_u, v_i>``, and a batch
touches three table rows per triplet. In PyTorch a step is some thirty tensor
operations of a few microseconds each on tiny tensors, plus ``torch.unique``
for lazy Adam: about 2.7 us a triplet at batch 256 on ML-1M, all of it
overhead. These loops compute the very same batch gradient (the batch mean of
the pairwise loss, plus the per-occurrence L2 term; see
:meth:`models.fm.FactorizationMachine._ids_only_gradients`) and the same update
rules, in one pass over the batch's rows. They read and write the model's
table in place (a NumPy view of the torch tensor), so the adapter keeps its
PyTorch parameters, optimizers and scoring.

At ML-20M shape the rows outgrow the CPU caches (165 k rows of table and of
Adam's two moments, 129 MB) and a step waits on main memory: the user rows
are in random order, and each Adam update reads a moments row that nothing
touched since the row's previous batch. The gradient loop therefore asks the
CPU to prefetch the table rows of the triplet ``PREFETCH_AHEAD`` ahead, and
the moments row of every row the batch touches for the first time, so that
those loads overlap the arithmetic (an LLVM ``prefetch`` hint: it changes no
value). Measured on the scale suite's largest epoch of triplets, 1.42-1.64 us a
triplet without it and 0.75-0.89 us with it; ``benchmarks/test_bench_fm.py``
compares the two side by side.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from models._prefetch import PREFETCH_AHEAD, prefetch_row

__all__ = ["PREFETCH_AHEAD", "ids_only_epoch", "ids_only_gradient", "make_scratch", "warm_up"]

# Update rules of ids_only_epoch (the dense ones step in torch, see ids_only_gradient).
SGD, LAZY_ADAM = 0, 1
_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="never")
def _dot_diff(a, b, c, k):
    """``sum_j a[j] (b[j] - c[j])`` over ``j < k``, in four interleaved partial sums.

    Four accumulators cut the chain of dependent additions by four; the order
    is fixed, so the result does not depend on the machine.
    """
    s0 = s1 = s2 = s3 = np.float32(0.0)
    j = 0
    while j + 4 <= k:
        s0 += a[j] * (b[j] - c[j])
        s1 += a[j + 1] * (b[j + 1] - c[j + 1])
        s2 += a[j + 2] * (b[j + 2] - c[j + 2])
        s3 += a[j + 3] * (b[j + 3] - c[j + 3])
        j += 4
    while j < k:
        s0 += a[j] * (b[j] - c[j])
        j += 1
    return (s0 + s1) + (s2 + s3)


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="never")
def _accumulate(gu, gp, gq, vu, vp, vq, g, scale, k):
    """Add one triplet's gradient to its three rows (element-wise: LLVM vectorises it)."""
    for j in range(k):
        gu[j] += g * (vp[j] - vq[j]) + scale * vu[j]
        gp[j] += g * vu[j] + scale * vp[j]
        gq[j] += -g * vu[j] + scale * vq[j]
    gu[k] += scale * vu[k]
    gp[k] += g + scale * vp[k]
    gq[k] += -g + scale * vq[k]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _batch_gradient(table, triplets, start, end, objective, scratch, step, ahead, upcoming):
    """Gradient of triplets ``start:end`` per distinct table row: ``(loss sum, distinct rows)``.

    ``triplets`` is ``(users, pos, neg)``, ``objective`` ``(item_offset,
    margin_loss, margin, l2_reg)`` and ``scratch`` ``(stamp, slot, rows,
    grads)``: ``rows[:r]`` lists the distinct rows in first-touch order,
    ``grads[:r]`` their summed gradients (users, positives and negatives
    alike). A row is known to be in this batch when ``stamp[row] == step``;
    ``slot[row]`` is its index in ``rows``. Everything is read from the table
    before any update. Arithmetic is float32, as in the PyTorch step.

    Prefetching (a hint, no effect on any value): the table rows of triplet
    ``e + ahead`` (``ahead`` 0: none), and the row of the 2-d ``upcoming``
    (Adam's moments, which the update reads next) of each row the batch
    touches first.
    """
    users, pos, neg = triplets
    offset, margin_loss, margin, l2 = objective
    stamp, slot, rows, grads = scratch
    width = table.shape[1]
    k = width - 1
    n = end - start
    scale = np.float32(2.0 * l2 / n)
    distinct = 0
    loss = 0.0
    n_total = users.shape[0]
    for e in range(start, end):
        if ahead > 0 and e + ahead < n_total:  # the next batch's first rows too
            prefetch_row(table, users[e + ahead])
            prefetch_row(table, pos[e + ahead] + offset)
            prefetch_row(table, neg[e + ahead] + offset)
        u = users[e]
        p = pos[e] + offset
        q = neg[e] + offset
        vu, vp, vq = table[u], table[p], table[q]
        d = (vp[k] - vq[k]) + _dot_diff(vu, vp, vq, k)
        if margin_loss:
            hinge = margin - d
            loss += max(hinge, 0.0)
            g = -1.0 / n if hinge > 0 else 0.0  # relu's derivative is 0 at 0, as autograd's
        else:
            x = -float(d)  # softplus(x) = log(1 + e^x), torch's threshold 20
            loss += x if x > 20.0 else math.log1p(math.exp(x))
            g = -1.0 / (1.0 + math.exp(-x)) / n  # -sigmoid(-d) / n
        for row in (u, p, q):
            if stamp[row] != step:
                stamp[row] = step
                slot[row] = distinct
                rows[distinct] = row
                if ahead > 0:
                    prefetch_row(upcoming, row)
                grads[distinct, :] = 0.0
                distinct += 1
        _accumulate(
            grads[slot[u]], grads[slot[p]], grads[slot[q]], vu, vp, vq, np.float32(g), scale, k
        )
    return loss, distinct


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="never")
def _adam_row(w, m, v, g, step, root2):
    """Lazy Adam on one row, float32 as torch's (see models.fm._LazyAdam.step)."""
    one = np.float32(1.0)
    beta1 = np.float32(_BETA1)
    beta2 = np.float32(_BETA2)
    eps = np.float32(_EPSILON)
    for j in range(w.shape[0]):
        mj = m[j] + (one - beta1) * (g[j] - m[j])
        vj = beta2 * v[j] + (one - beta2) * g[j] * g[j]
        m[j] = mj
        v[j] = vj
        w[j] -= step * mj / (np.sqrt(vj) / root2 + eps)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def ids_only_epoch(
    table, triplets, batch_size, objective, rule, learning_rate, moments, iterations, scratch,
    ahead=PREFETCH_AHEAD,
):  # fmt: skip
    """One epoch of mini-batch steps with ``sgd`` or ``lazy-adam`` on the table, in place.

    Parameters
    ----------
    table : float32 array, shape (rows, k + 1)
        ``[v_j, w_j]`` per feature (users, then items from ``item_offset``).
    triplets : tuple of three int64 arrays, shape (n,)
        The epoch's users, positives and negatives, in order.
    batch_size : int
    objective : tuple
        ``(item_offset, margin_loss, margin, l2_reg)``: ``margin_loss`` selects the
        hinge, otherwise BPR.
    rule : int
        ``SGD`` or ``LAZY_ADAM``.
    moments : float32 array, shape (rows, 2, k + 1)
        Lazy Adam's ``m`` and ``v`` (unused for SGD).
    iterations : int
        Steps taken before this epoch (Adam's bias correction uses the global step).
    scratch : tuple
        ``(stamp, slot, rows, grads)``: int64 ``(rows,)`` arrays (which batch
        last touched a row, and its slot there; ``stamp`` starts at -1), and
        ``(3 * batch_size,)`` int64, ``(3 * batch_size, k + 1)`` float32 arrays
        (:func:`make_scratch` builds them).
    ahead : int
        How many triplets ahead to prefetch table rows (0: no prefetching,
        for side-by-side timings; the results are the same).

    Returns
    -------
    (float, int)
        Sum of the triplets' pairwise losses, and the step count afterwards.
    """
    n_total = triplets[0].shape[0]
    rows, grads = scratch[2], scratch[3]
    # The moments as one row per table row, for prefetching (SGD: the table itself).
    upcoming = moments.reshape((moments.shape[0], -1)) if rule == LAZY_ADAM else table
    loss = 0.0
    lr = learning_rate
    for start in range(0, n_total, batch_size):
        end = min(start + batch_size, n_total)
        iterations += 1
        batch_loss, distinct = _batch_gradient(
            table, triplets, start, end, objective, scratch, iterations, ahead, upcoming
        )
        loss += batch_loss
        if rule == SGD:
            rate = np.float32(lr)
            for s in range(distinct):
                w = table[rows[s]]
                g = grads[s]
                for j in range(w.shape[0]):
                    w[j] -= rate * g[j]
            continue
        step = np.float32(lr / (1.0 - _BETA1**iterations))
        root2 = np.float32(math.sqrt(1.0 - _BETA2**iterations))
        for s in range(distinct):
            r = rows[s]
            _adam_row(table[r], moments[r, 0], moments[r, 1], grads[s], step, root2)
    return loss, iterations


@numba.njit(nogil=True, cache=True, error_model="numpy")
def ids_only_gradient(table, triplets, start, end, objective, scratch, step, dense):
    """The batch gradient scattered into the whole-table ``dense`` (zeroed first).

    For the dense update rules (``adam``, ``adagrad``), which then step in
    torch over the whole table; the arguments are :func:`_batch_gradient`'s.
    Returns the batch's loss sum. (No prefetching: the dense step streams
    the whole table anyway.)
    """
    dense[:, :] = 0.0
    loss, distinct = _batch_gradient(
        table, triplets, start, end, objective, scratch, step, 0, table
    )
    rows, grads = scratch[2], scratch[3]
    for s in range(distinct):
        dense[rows[s], :] += grads[s, :]
    return loss


def make_scratch(num_rows: int, batch_size: int, width: int) -> tuple[np.ndarray, ...]:
    """The kernels' ``scratch``: ``(stamp, slot, rows, grads)``, see :func:`ids_only_epoch`.

    ``stamp`` starts at -1 (no batch has touched a row yet); keep the same
    arrays across epochs, since stamps are global step numbers.
    """
    return (
        np.full(num_rows, -1, dtype=np.int64),  # stamp: the last batch that touched a row
        np.zeros(num_rows, dtype=np.int64),  # slot: the row's index in that batch's lists
        np.zeros(3 * batch_size, dtype=np.int64),  # rows: the batch's distinct rows
        np.zeros((3 * batch_size, width), dtype=np.float32),  # grads: their gradients
    )


def warm_up() -> None:
    """Load (or compile, the first time in a checkout) both kernels, on a 2-row table.

    With the argument types of :meth:`models.fm.FactorizationMachine._train_epoch_compiled`,
    so that its calls find the machine code ready.
    """
    table = np.zeros((2, 2), np.float32)
    triplets = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64))
    scratch = make_scratch(2, 1, 2)
    objective = (1, False, 1.0, 0.0)
    ids_only_epoch(table, triplets, 1, objective, SGD, 0.0, np.zeros((1, 2, 1), np.float32), 0,
                   scratch, PREFETCH_AHEAD)  # fmt: skip
    ids_only_gradient(table, triplets, 0, 1, objective, scratch, 1, np.zeros_like(table))
