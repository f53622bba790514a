"""Seeded synthetic implicit-feedback data with power-law popularity and low-rank taste.

The generator is what unit tests and scale benchmarks use: tiny instances run
in milliseconds, and the ML-20M shape (138,000 users x 27,000 items x 10M
positives) is produced in blocks without ever materialising users x items.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from bench.datasets.dataset import Dataset
from bench.datasets.registry import LoadRequest, check_int
from bench.datasets.splits import (
    VALIDATION_FRACTION,
    holdout_fraction_mask,
    random_leave_k_out_mask,
)
from bench.interactions import Interactions

__all__ = ["OPTIONS", "check_options", "load_synthetic", "synthetic", "synthetic_interactions"]


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def synthetic_interactions(
    num_users: int = 200,
    num_items: int = 300,
    num_positives: int = 6_000,
    *,
    rank: int = 8,
    popularity_exponent: float = 0.8,
    taste_strength: float = 3.0,
    seed: int | np.random.Generator = 0,
    block_users: int = 8192,
) -> Interactions:
    """Draw positive (user, item) pairs with a known low-rank structure.

    Item ``i`` (by a random permutation of popularity ranks) has base popularity
    ``(rank_i + 1) ** -popularity_exponent``. User activity is log-normal (at
    least 2 positives each, so every user can be split). Each user picks items
    without replacement with probability proportional to
    ``popularity_i * exp(taste_strength * <u, v_i> / sqrt(rank))`` (Gumbel
    top-k over popularity-drawn candidates), where ``u`` and ``v_i`` are
    standard normal factors. A model that learns the factors beats popularity.

    Parameters
    ----------
    num_users, num_items, num_positives : int
        Target sizes. ``num_positives`` is met exactly on catalogues of up to
        4,096 items; above that, heavy users whose popularity-drawn candidates
        repeat a lot may get a few fewer (within about 1% in total). Each user
        is capped at ``num_items - 1``.
    rank : int
        Dimension of the latent taste factors.
    popularity_exponent : float
        Zipf exponent of item popularity (0 = uniform).
    taste_strength : float
        How much the latent factors matter relative to popularity.
    seed : int or numpy.random.Generator
        Every random draw flows from it.
    block_users : int
        Users processed per block (bounds memory).

    Returns
    -------
    Interactions
        Sorted by (user, item), no duplicate pairs, weights ``None``.
    """
    num_users = _check_positive_int("num_users", num_users)
    num_items = _check_positive_int("num_items", num_items)
    num_positives = _check_positive_int("num_positives", num_positives)
    rank = _check_positive_int("rank", rank)
    if num_items < 3:
        raise ValueError(f"num_items must be >= 3, got {num_items}")
    if popularity_exponent < 0 or not np.isfinite(popularity_exponent):
        raise ValueError(f"popularity_exponent must be >= 0, got {popularity_exponent}")
    if num_positives < 2 * num_users:
        raise ValueError(
            f"num_positives={num_positives} is below 2 per user ({2 * num_users} for "
            f"num_users={num_users})"
        )
    rng = np.random.default_rng(seed)

    cap = num_items - 1
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=num_users)
    counts = np.floor(activity / activity.sum() * (num_positives - 2 * num_users)).astype(np.int64)
    counts += 2
    deficit = num_positives - int(counts.sum())
    if deficit > 0:
        counts += np.bincount(
            rng.choice(num_users, size=deficit, p=activity / activity.sum()), minlength=num_users
        )
    counts = np.minimum(counts, cap)

    popularity = (np.arange(num_items) + 1.0) ** -popularity_exponent
    popularity = popularity[rng.permutation(num_items)]
    popularity /= popularity.sum()
    cdf = np.cumsum(popularity)
    log_pop = np.log(popularity)
    user_factors = rng.standard_normal((num_users, rank)).astype(np.float32)
    item_factors = rng.standard_normal((num_items, rank)).astype(np.float32)
    scale = np.float32(taste_strength / np.sqrt(rank))

    users_out, items_out = [], []
    if num_items <= 4096:
        # Dense path: every item is a candidate (small catalogues), exact Gumbel top-k.
        for start in range(0, num_users, block_users):
            stop = min(start + block_users, num_users)
            logits = (user_factors[start:stop] @ item_factors.T) * scale + log_pop
            logits += rng.gumbel(size=logits.shape)
            order = np.argsort(-logits, axis=1)
            keep = np.arange(num_items)[None, :] < counts[start:stop, None]
            rows = np.broadcast_to(np.arange(start, stop)[:, None], order.shape)[keep]
            users_out.append(rows)
            items_out.append(order[keep])
    else:
        # Sparse path: 4 popularity-drawn candidates per wanted item, re-ranked by
        # taste plus Gumbel noise; ragged arrays keep the cost O(num_positives).
        n_cand = 4 * counts + 8
        bounds = np.searchsorted(
            np.cumsum(n_cand), np.arange(1, 1 + n_cand.sum() // 4_000_000) * 4_000_000
        )
        edges = np.unique(np.r_[0, bounds, num_users])
        for start, stop in itertools.pairwise(edges):
            cand_user = np.repeat(np.arange(start, stop), n_cand[start:stop])
            cand = np.searchsorted(cdf, rng.random(cand_user.shape[0]) * cdf[-1])
            cand = np.minimum(cand, num_items - 1)
            taste = np.einsum(
                "ij,ij->i", user_factors[cand_user], item_factors[cand], dtype=np.float32
            )
            logits = taste * scale + rng.gumbel(size=cand.shape[0]).astype(np.float32)
            # First occurrence of each (user, item) pair, then best logits first per user.
            key = cand_user.astype(np.int64) * num_items + cand
            first = np.unique(key, return_index=True)[1]
            cand_user, cand, logits = cand_user[first], cand[first], logits[first]
            order = np.lexsort((-logits, cand_user))
            cand_user, cand = cand_user[order], cand[order]
            starts = np.searchsorted(cand_user, np.arange(start, stop))
            rank_in_user = np.arange(cand_user.shape[0]) - starts[cand_user - start]
            keep = rank_in_user < counts[cand_user]
            users_out.append(cand_user[keep])
            items_out.append(cand[keep])

    user_ids = np.concatenate(users_out).astype(np.int32)
    item_ids = np.concatenate(items_out).astype(np.int32)
    order = np.lexsort((item_ids, user_ids))
    return Interactions(user_ids[order], item_ids[order], num_users, num_items)


def synthetic(
    num_users: int = 200,
    num_items: int = 300,
    num_positives: int = 6_000,
    *,
    test_per_user: int = 2,
    rank: int = 8,
    popularity_exponent: float = 0.8,
    taste_strength: float = 3.0,
    seed: int = 0,
) -> Dataset:
    """A synthetic :class:`~bench.datasets.dataset.Dataset`, random per-user leave-k-out split.

    Parameters are those of :func:`synthetic_interactions`, plus ``test_per_user``
    (rows held out per user, at least one row always stays in train). All
    interactions are positives; ``train_all`` equals ``train``. The same
    arguments always give the same dataset (its ``sha256`` says so).
    """
    seeds = np.random.SeedSequence(seed).spawn(2)
    data = synthetic_interactions(
        num_users,
        num_items,
        num_positives,
        rank=rank,
        popularity_exponent=popularity_exponent,
        taste_strength=taste_strength,
        seed=np.random.default_rng(seeds[0]),
    )
    mask = random_leave_k_out_mask(data.user_ids, test_per_user, np.random.default_rng(seeds[1]))
    train, test = data.select(~mask), data.select(mask)
    digest = hashlib.sha256()
    for arr in (train.user_ids, train.item_ids, test.user_ids, test.item_ids):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return Dataset(
        name="synthetic",
        split=f"random-leave-{test_per_user}-out",
        min_rating=None,
        train=train,
        test=test,
        train_all=train,
        raw_user_ids=np.arange(num_users),
        raw_item_ids=np.arange(num_items),
        source=(
            f"synthetic(num_users={num_users}, num_items={num_items}, "
            f"num_positives={num_positives}, rank={rank}, seed={seed})"
        ),
        sha256=digest.hexdigest(),
    )


# ----------------------------------------------------------------------------- as a dataset

#: The generator's options as a dataset (``rsbench list``).
OPTIONS: dict[str, str] = {
    "seed": "seed of the generator and of its split",
    "num_users": "users (int >= 1)",
    "num_items": "items (int >= 3)",
    "num_positives": "positives in total (int >= 2 * num_users)",
    "test_per_user": "test positives per user (int >= 1)",
    "rank": "latent taste dimension (int >= 1)",
    "popularity_exponent": "Zipf exponent of item popularity (>= 0)",
    "taste_strength": "weight of taste against popularity (>= 0)",
}


def load_synthetic(request: LoadRequest) -> Dataset:
    """The synthetic dataset of a checked request: its random split, or the validation carve."""
    options = dict(request.options)
    stage = request.stage
    if stage == "test" and "validation_seed" in options:
        raise ValueError("validation_seed applies to stage='validation' only")
    seed = options.pop("seed", 0)
    validation_seed = options.pop("validation_seed", 0)
    data = synthetic(seed=seed, **options)
    if stage == "test":
        return data
    # The fixed-split carve (CONTRACTS item 4): its test rows are dropped, never read.
    train = data.train
    held = holdout_fraction_mask(
        train.user_ids,
        np.arange(len(train)),
        np.ones(len(train), dtype=bool),
        VALIDATION_FRACTION,
        np.random.default_rng(validation_seed),
    )
    rule = (
        f"random {VALIDATION_FRACTION:g} of each user's train rows, never the user's "
        f"last train positive (validation_seed {validation_seed})"
    )
    kept, validation = train.select(~held), train.select(held)
    return replace(
        data,
        train=kept,
        test=validation,
        train_all=kept,
        test_all=validation,
        stage="validation",
        facts={**dict(data.facts), "validation_rule": rule, "test_rule": "random leave-k-out"},
    )


def check_options(options: Mapping[str, Any]) -> None:
    """The generator's own checks of its options, before anything runs (``ValueError``)."""
    defaults = {n: p.default for n, p in inspect.signature(synthetic).parameters.items()}
    users = options.get("num_users", defaults["num_users"])
    positives = options.get("num_positives", defaults["num_positives"])
    if isinstance(users, int) and isinstance(positives, int) and positives < 2 * users:
        # synthetic()'s own rule, checked before anything runs
        raise ValueError(
            f"num_positives={positives} is below 2 per user ({2 * users} for num_users={users})"
        )
    if "validation_seed" in options:
        check_int("validation_seed", options["validation_seed"], 0)
    for key in ("num_users", "num_items", "num_positives", "test_per_user", "rank"):
        if key in options:
            check_int(key, options[key], 1)
    for key in ("popularity_exponent", "taste_strength"):
        if key in options:
            value = options[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not np.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
