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


def triplet_hinge_step(users, items, user_ids, pos_ids, neg_ids, *, margin, cosine, epsilon=1e-7):
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
        ``|d sim / d entry| / batch`` (every hinge taken as active).
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
    sims, sims_abs = [], []
    grad_users, grad_items = np.zeros_like(users), np.zeros_like(items)
    for ids in (pos_ids, neg_ids):
        v, inv_v, above_v = scaled(items, ids)
        sims.append((u * v).sum(axis=1))
        sim_abs = (np.abs(u) * np.abs(v)).sum(axis=1, keepdims=True)
        sims_abs.append(sim_abs[:, 0])
        # d cos(a, b) / d a = inv_a (b^ - [|a| > eps] cos(a, b) a^): at most
        # inv_a (|b^| + [|a| > eps] |a^| sum|a^ b^|) per entry; for dot, |b|.
        np.add.at(grad_users, user_ids, inv_u * (np.abs(v) + above_u * np.abs(u) * sim_abs) / num)
        np.add.at(grad_items, ids, inv_v * (np.abs(u) + above_v * np.abs(v) * sim_abs) / num)
    hinge = margin + sims[1] - sims[0]
    hinge_abs = margin + sims_abs[0] + sims_abs[1]
    return hinge, hinge_abs, grad_users, grad_items
