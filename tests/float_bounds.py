"""Rounding bounds for tests that compare two floating-point kernel paths (issue 25).

BLAS, XLA, numba and torch kernels pick their summation order and vector width
by instruction set, so two paths computing the same float32 value differ in
the last bits, and not by the same amount on every CPU. Each path is within
``gamma(n) * A`` of the exact value, where ``A`` is the same computation with
every input, sign and gate replaced by its absolute value (its
"|.|-computation") and ``n`` bounds the roundings on its longest chain
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 3.1); two
paths then differ by at most ``2 gamma(n) A``. Tests compare with such bounds,
computed in float64 from the actual inputs, instead of a fixed tolerance that
happens to pass on one CPU. Gates (a hinge, a ReLU, a comparison) may flip
where their input is within rounding of 0, so tests also check that none is.
"""

from __future__ import annotations

import numpy as np


def gamma(n: int, dtype=np.float32) -> float:
    """``n u / (1 - n u)``, ``u`` the unit roundoff of ``dtype``: a sum or dot product of
    ``n`` terms in any order is within ``gamma(n) * sum(|term|)`` of the exact one."""
    u = float(np.finfo(dtype).eps) / 2
    return n * u / (1 - n * u)


def triplet_hinge_step(
    users, items, user_ids, pos_ids, neg_ids, *, margin, cosine, epsilon=1e-7, closed_below=None
):
    """The batch-mean margin loss of a bilinear triplet model at float64 tables.

    ``mean_b relu(margin + sim(u_b, n_b) - sim(u_b, p_b))`` with ``sim`` the
    cosine (rows scaled by ``1 / max(|x|, epsilon)``, Keras's normalisation)
    or the dot product. The L2 penalty is not included.

    Returns
    -------
    hinge, hinge_abs : numpy.ndarray, shape (batch,)
        Each hinge's argument and its |.|-computation.
    grad_users, grad_items : numpy.ndarray, shape of ``users`` and ``items``
        Each table entry's gradient |.|-computation: the sum over its uses of
        ``|d sim / d entry| / batch``, over every triplet, or with
        ``closed_below`` only over those whose hinge is not below
        ``-closed_below * hinge_abs`` (closed on every path that rounds less).
    """
    users = np.asarray(users, np.float64)
    items = np.asarray(items, np.float64)
    num = len(user_ids)

    def scaled(table, ids):
        rows = table[ids]
        if not cosine:
            return rows, np.ones((num, 1)), np.zeros((num, 1))
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        inverse = 1 / np.maximum(norms, epsilon)
        return rows * inverse, inverse, (norms > epsilon).astype(float)

    u, inv_u, above_u = scaled(users, user_ids)
    rows = [scaled(items, ids) for ids in (pos_ids, neg_ids)]
    sims = [(u * v).sum(axis=1) for v, _, _ in rows]
    sims_abs = [(np.abs(u) * np.abs(v)).sum(axis=1) for v, _, _ in rows]
    hinge = margin + sims[1] - sims[0]
    hinge_abs = margin + sims_abs[0] + sims_abs[1]
    weight = np.full((num, 1), 1 / num)
    if closed_below is not None:
        weight[hinge < -closed_below * hinge_abs] = 0.0
    grad_users, grad_items = np.zeros_like(users), np.zeros_like(items)
    for ids, (v, inv_v, above_v), sim_abs in zip((pos_ids, neg_ids), rows, sims_abs):
        sim_abs = sim_abs[:, None]
        # d cos(a, b) / d a = inv_a (b^ - [|a| > eps] cos(a, b) a^): at most
        # inv_a (|b^| + [|a| > eps] |a^| sum|a^ b^|) per entry; for dot, |b|.
        np.add.at(
            grad_users, user_ids, weight * inv_u * (np.abs(v) + above_u * np.abs(u) * sim_abs)
        )
        np.add.at(grad_items, ids, weight * inv_v * (np.abs(u) + above_v * np.abs(v) * sim_abs))
    return hinge, hinge_abs, grad_users, grad_items


def mlp_abs(x, layers):
    """|.|-computation of an MLP's outputs (ReLU layers ``[(kernel, bias), ...]``) on rows ``x``.

    Returns the ``(rows, out)`` |.|-computation and the roundings on its longest
    chain (each layer: its fan-in products and sums, and the bias).
    """
    x_abs, depth = np.abs(np.asarray(x, np.float64)), 0
    for kernel, bias in layers:
        depth += np.shape(kernel)[0] + 1
        x_abs = x_abs @ np.abs(np.asarray(kernel, np.float64)) + np.abs(
            np.asarray(bias, np.float64)
        )
    return x_abs, depth


def mlp_hinge_step(pairs, layers, *, margin):
    """The batch-mean margin loss of an MLP triplet model (ReLU layers, one ReLU output).

    ``pairs`` (float64, ``(2 batch, in)``): the positive pairs' inputs, then
    the negative pairs'; ``layers``: ``[(kernel (in, out), bias (out,)), ...]``.

    A ReLU or hinge whose input lies within rounding of 0 may be open on one path
    and closed on another: its terms then appear in one gradient only, so they are
    returned apart (``flip_*``), to be allowed in full rather than up to rounding.

    Returns
    -------
    hinge, hinge_abs : numpy.ndarray, shape (batch,)
        Each hinge's argument and its |.|-computation.
    grad_pairs, flip_pairs : numpy.ndarray, shape of ``pairs``
        The |.|-computation of the loss's gradient with respect to each input
        (every gate taken as open), and its part through gates near 0.
    grad_layers, flip_layers : list of (numpy.ndarray, numpy.ndarray)
        The same for each layer's kernel and bias.
    """
    pairs = np.asarray(pairs, np.float64)
    num = pairs.shape[0] // 2
    layers = [(np.asarray(k, np.float64), np.asarray(b, np.float64)) for k, b in layers]
    x, x_abs = pairs, np.abs(pairs)
    inputs_abs, near_zero, depth = [], [], 0
    for kernel, bias in layers:
        inputs_abs.append(x_abs)
        depth += kernel.shape[0] + 1
        pre, x_abs = x @ kernel + bias, x_abs @ np.abs(kernel) + np.abs(bias)
        near_zero.append(np.abs(pre) <= 2 * gamma(depth) * x_abs)
        x = np.maximum(pre, 0)
    hinge = margin + x[num:, 0] - x[:num, 0]
    hinge_abs = margin + x_abs[num:, 0] + x_abs[:num, 0]
    hinge_near = np.abs(hinge) <= 2 * gamma(depth + 2) * hinge_abs
    delta = np.full((2 * num, 1), 1 / num)  # |d loss / d output| of every pair, gates open
    flip = delta * (near_zero[-1] | np.concatenate([hinge_near, hinge_near])[:, None])
    grad_layers, flip_layers = [], []
    for index in range(len(layers) - 1, -1, -1):
        kernel, x_in = np.abs(layers[index][0]), inputs_abs[index]
        grad_layers.append((x_in.T @ delta, delta.sum(axis=0)))
        flip_layers.append((x_in.T @ flip, flip.sum(axis=0)))
        delta, flip = delta @ kernel.T, flip @ kernel.T
        if index > 0:  # a unit near 0 below: all its terms may flip
            flip = np.where(near_zero[index - 1], delta, flip)
    return hinge, hinge_abs, delta, flip, grad_layers[::-1], flip_layers[::-1]
