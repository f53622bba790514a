"""Train/test splits of a ratings log: pure mask functions, and the catalogue that declares them.

Every mask function takes plain arrays in the log's own row order and returns a
boolean mask (``True`` = test row), so a split is reproducible from the raw
ratings file alone and can never put the same row on both sides. Each named
split is a :class:`SplitRule` in :data:`SPLITS`: its mask, what it needs from a
dataset (timestamps, side features), whether it reproduces a fixed file of the
distribution, whether it is seeded, and how a validation set is carved from its
train rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "SPLITS",
    "VALIDATION_FRACTION",
    "SplitRule",
    "allbut_mask",
    "cold_mask",
    "fold_mask",
    "global_cutoff_mask",
    "holdout_fraction_mask",
    "quantile_cutoff",
    "random_fraction_mask",
    "random_leave_k_out_mask",
    "split_mask",
    "temporal_leave_last_k_out_mask",
    "validation_mask",
]


def _rank_within_user(
    user_ids: np.ndarray, order_key: np.ndarray, tiebreak: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of each row among its user's rows, sorted by ``order_key`` then ``tiebreak``.

    ``tiebreak`` defaults to the row number, so the sort is stable.
    """
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    tiebreak = np.arange(n) if tiebreak is None else tiebreak
    order = np.lexsort((tiebreak, order_key, user_ids))
    sorted_users = user_ids[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    return rank


def allbut_mask(user_ids: np.ndarray, first: int, last: int) -> np.ndarray:
    """GroupLens ``allbut.pl``: each user's ratings number ``first``..``last`` go to test.

    Numbers are 1-based positions among the user's rows *in file order*; ``ua``
    is ``allbut_mask(users, 1, 10)`` and ``ub`` is ``allbut_mask(users, 11, 20)``.
    Users with fewer rows simply contribute fewer (or no) test rows.
    """
    if not 1 <= first <= last:
        raise ValueError(f"need 1 <= first <= last, got first={first}, last={last}")
    n = np.asarray(user_ids).shape[0]
    rank = _rank_within_user(user_ids, np.arange(n))
    return (rank >= first - 1) & (rank <= last - 1)


def fold_mask(n_rows: int, fold: int, n_folds: int = 5) -> np.ndarray:
    """GroupLens ``u1``..``u5``: fold ``f`` (1-based) tests the f-th block of consecutive rows.

    For ML-100K the blocks are lines 1-20,000, 20,001-40,000, ... of ``u.data``.
    """
    if not 1 <= fold <= n_folds:
        raise ValueError(f"fold must be in 1..{n_folds}, got {fold}")
    if n_rows % n_folds:
        raise ValueError(f"{n_rows} rows cannot be cut into {n_folds} equal folds")
    size = n_rows // n_folds
    mask = np.zeros(n_rows, dtype=bool)
    mask[(fold - 1) * size : fold * size] = True
    return mask


def random_leave_k_out_mask(
    user_ids: np.ndarray, k: int, rng: np.random.Generator | int
) -> np.ndarray:
    """Per user, ``k`` rows chosen uniformly at random go to test.

    A user always keeps at least one training row: a user with ``n <= k`` rows
    sends ``n - 1`` to test. Deterministic for a given seed or generator state.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    rank = _rank_within_user(user_ids, rng.random(user_ids.shape[0]))
    counts = np.bincount(user_ids)[user_ids]
    return rank < np.minimum(k, counts - 1)


def temporal_leave_last_k_out_mask(
    user_ids: np.ndarray, timestamps: np.ndarray, k: int
) -> np.ndarray:
    """Per user, the ``k`` most recent rows go to test (ties broken by file order).

    A user always keeps at least one training row. Training rows are never more
    recent than that user's test rows, so no user's future leaks into train.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    # Rank by descending time; among equal timestamps the later line counts as more recent.
    rank = _rank_within_user(user_ids, -np.asarray(timestamps), -np.arange(n))
    counts = np.bincount(user_ids)[user_ids]
    return rank < np.minimum(k, counts - 1)


def _check_fraction(fraction: float, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1), got {fraction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"{name} must be in (0, 1), got {fraction!r}")
    return float(fraction)


def random_fraction_mask(
    user_ids: np.ndarray, fraction: float, rng: np.random.Generator | int
) -> np.ndarray:
    """Per user, ``round(fraction * n)`` of the user's ``n`` rows drawn at random go to test.

    Halves round up (``floor(fraction * n + 0.5)``) and a user always keeps at
    least one training row, so 0.2 of a user's 7 rows sends 1 to test and of
    13 rows sends 3 (an 80/20 hold-out). Deterministic for a given seed.
    """
    fraction = _check_fraction(fraction)
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    rank = _rank_within_user(user_ids, rng.random(user_ids.shape[0]))
    counts = np.bincount(user_ids)[user_ids]
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    return rank < np.minimum(wanted, counts - 1)


def quantile_cutoff(timestamps: np.ndarray, quantile: float) -> int:
    """The time ``t`` such that a ``quantile`` share of the rows happened before it.

    ``t`` is the timestamp of row ``ceil(quantile * n)`` in time order (the
    inverted empirical CDF), so ``global_cutoff_mask(ts, t)`` puts about that
    share of the rows in train (ties at ``t`` all go to test).
    """
    quantile = _check_fraction(quantile, "cutoff_quantile")
    stamps = np.sort(np.asarray(timestamps, dtype=np.int64))
    if stamps.size == 0:
        raise ValueError("no timestamps")
    position = min(int(np.ceil(quantile * stamps.shape[0])), stamps.shape[0] - 1)
    return int(stamps[position])


def global_cutoff_mask(timestamps: np.ndarray, cutoff: int) -> np.ndarray:
    """Everything at or after ``cutoff`` is test; everything before it is train.

    Unlike the per-user splits, a user (or item) may end up on one side only:
    test users or items without a train row are *cold* and are reported by the
    data layer, never silently scored.
    """
    return np.asarray(timestamps, dtype=np.int64) >= int(cutoff)


def cold_mask(ids: np.ndarray, fraction: float, rng: np.random.Generator | int) -> np.ndarray:
    """Hold out ``round(fraction * m)`` of the ``m`` distinct ids entirely (every row is test).

    Used with user ids for a cold-start-users split and with item ids for a
    cold-start-items split; at least one id stays in train.
    """
    fraction = _check_fraction(fraction, "cold_fraction")
    rng = np.random.default_rng(rng)
    ids = np.asarray(ids)
    present = np.unique(ids)
    count = min(int(np.floor(fraction * present.shape[0] + 0.5)), present.shape[0] - 1)
    held = rng.choice(present, size=max(count, 0), replace=False)
    return np.isin(ids, held)


def holdout_fraction_mask(
    user_ids: np.ndarray,
    timestamps: np.ndarray,
    positive: np.ndarray,
    fraction: float,
    rng: np.random.Generator | int,
) -> np.ndarray:
    """Per user, ``round(fraction * n)`` random rows, never the user's last positive.

    The validation carve of GroupLens's fixed splits: the user's last positive
    row (latest timestamp, ties by the later line) is never drawn, so every
    user with a positive keeps one in train. Deterministic for a given seed.
    """
    fraction = _check_fraction(fraction)
    rng = np.random.default_rng(rng)
    user_ids = np.asarray(user_ids)
    n = user_ids.shape[0]
    positive = np.asarray(positive, dtype=bool)
    protected = np.zeros(n, dtype=bool)
    if positive.any():
        rows = np.flatnonzero(positive)
        last = _rank_within_user(user_ids[rows], -np.asarray(timestamps)[rows], -rows) == 0
        protected[rows[last]] = True
    # Protected rows sort last among the user's rows, so they are drawn only if nothing else is.
    key = rng.random(n) + protected
    rank = _rank_within_user(user_ids, key)
    counts = np.bincount(user_ids)[user_ids]
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    return (rank < np.minimum(wanted, counts - 1)) & ~protected


# ----------------------------------------------------------------------------- the catalogue

#: The validation carve of splits that reproduce a fixed file (CONTRACTS item 4).
VALIDATION_FRACTION = 0.1

#: ``(user_ids, item_ids, timestamps, args) -> (test mask, rule in words)``; ``args``
#: holds ``seed``, ``k``, ``test_fraction``, ``cutoff``, ``cutoff_quantile``, ``cold_fraction``.
MaskFunction = Callable[
    [np.ndarray, np.ndarray | None, np.ndarray | None, Mapping[str, Any]], tuple[np.ndarray, str]
]


@dataclass(frozen=True)
class SplitRule:
    """One named split: its mask and what it needs.

    Attributes
    ----------
    name, description : str
        The name used everywhere and one line for ``rsbench list``.
    mask : MaskFunction
    needs : frozenset of str
        What a dataset must carry to offer it (``timestamps``, ``user_features``,
        ``item_features``); checked when a dataset is registered.
    fixed : bool
        Reproduces a fixed file of the distribution (GroupLens ``ua``...) from
        the file order alone; its validation set is a seeded
        :data:`VALIDATION_FRACTION` carve of each user's train rows
        (:func:`holdout_fraction_mask`). Otherwise the rule itself is re-applied
        to the train rows.
    seeded : bool
        Draws at random (the ``seed`` option).
    cold_start : bool
        Puts users or items in test that train never saw (they are reported,
        and set aside for models that cannot score them).
    facts : callable, optional
        ``facts(timestamps, args) -> dict`` of what the dataset's summary records
        about this split (the cut-off time).
    """

    name: str
    description: str
    mask: MaskFunction
    needs: frozenset[str] = frozenset()
    fixed: bool = False
    seeded: bool = False
    cold_start: bool = False
    facts: Callable[[np.ndarray | None, Mapping[str, Any]], dict[str, Any]] | None = None


def _allbut(first: int, last: int, rule: str) -> MaskFunction:
    return lambda user_ids, item_ids, timestamps, args: (
        allbut_mask(user_ids, first, last),
        rule,
    )


def _fold(fold: int) -> MaskFunction:
    return lambda user_ids, item_ids, timestamps, args: (
        fold_mask(user_ids.shape[0], fold),
        f"GroupLens u{fold} (block of lines)",
    )


def _random(user_ids, item_ids, timestamps, args):
    k, seed = args["k"], args["seed"]
    mask = random_leave_k_out_mask(user_ids, k, np.random.default_rng(seed))
    return mask, f"random leave-{k}-out per user (seed {seed})"


def _random_fraction(user_ids, item_ids, timestamps, args):
    fraction, seed = args["test_fraction"], args["seed"]
    mask = random_fraction_mask(user_ids, fraction, np.random.default_rng(seed))
    return mask, f"random {fraction:g} per user (seed {seed})"


def _temporal(user_ids, item_ids, timestamps, args):
    k = args["k"]
    return temporal_leave_last_k_out_mask(user_ids, timestamps, k), f"temporal leave-last-{k}-out"


def _time_cutoff(user_ids, item_ids, timestamps, args):
    cutoff, quantile = args["cutoff"], args["cutoff_quantile"]
    if cutoff is None:
        cutoff = quantile_cutoff(timestamps, quantile)
        rule = f"global time cut-off at the {quantile:g} quantile (t={cutoff})"
    else:
        rule = f"global time cut-off at t={cutoff}"
    return global_cutoff_mask(timestamps, cutoff), rule


def _cutoff_facts(timestamps, args):
    cutoff = args["cutoff"]
    if cutoff is None:
        cutoff = quantile_cutoff(timestamps, args["cutoff_quantile"])
    return {"cutoff": int(cutoff)}


def _cold(what: str) -> MaskFunction:
    def mask(user_ids, item_ids, timestamps, args):
        fraction, seed = args["cold_fraction"], args["seed"]
        ids = user_ids if what == "users" else item_ids
        held = cold_mask(np.asarray(ids), fraction, np.random.default_rng(seed))
        return held, f"cold-start {what}: {fraction:g} of {what} held out (seed {seed})"

    return mask


_RULES = (
    SplitRule(
        "ua",
        "GroupLens ua: each user's first 10 ratings in file order are test "
        "(ML-100K: 90,570 train / 9,430 test ratings)",
        _allbut(1, 10, "GroupLens ua (first 10 ratings per user in file order)"),
        fixed=True,
    ),
    SplitRule(
        "ub",
        "GroupLens ub: each user's 11th to 20th ratings in file order are test",
        _allbut(11, 20, "GroupLens ub (ratings 11-20 per user in file order)"),
        fixed=True,
    ),
    *(
        SplitRule(
            f"u{f}",
            f"GroupLens u{f}: the {f}th of five consecutive blocks of lines is test "
            "(ML-100K: 80,000 / 20,000 ratings)",
            _fold(f),
            fixed=True,
        )
        for f in range(1, 6)
    ),
    SplitRule(
        "random",
        "per user, k ratings drawn at random (seeded) are test; a user keeps >= 1 in train",
        _random,
        seeded=True,
    ),
    SplitRule(
        "temporal",
        "per user, the k most recent ratings are test (ties: the later line is more "
        "recent); a user keeps >= 1 in train",
        _temporal,
        needs=frozenset({"timestamps"}),
    ),
    SplitRule(
        "random-fraction",
        "per user, round(test_fraction * n) ratings drawn at random (seeded; "
        "default 0.2, an 80/20 hold-out) are test; a user keeps >= 1 in train",
        _random_fraction,
        seeded=True,
    ),
    SplitRule(
        "time-cutoff",
        "global temporal cut-off: ratings before time `cutoff` (or before the "
        "`cutoff_quantile` of time, default 0.8) are train, the rest test; test users/items "
        "unseen in train are cold and reported",
        _time_cutoff,
        needs=frozenset({"timestamps"}),
        cold_start=True,
        facts=_cutoff_facts,
    ),
    SplitRule(
        "cold-users",
        "cold-start users: a seeded `cold_fraction` (default 0.1) of users have all "
        "their ratings in test; scored from user side features",
        _cold("users"),
        needs=frozenset({"user_features"}),
        seeded=True,
        cold_start=True,
    ),
    SplitRule(
        "cold-items",
        "cold-start items: a seeded `cold_fraction` (default 0.1) of items have all "
        "their ratings in test; scored from item side features",
        _cold("items"),
        needs=frozenset({"item_features"}),
        seeded=True,
        cold_start=True,
    ),
)

#: Every split by name.
SPLITS: dict[str, SplitRule] = {rule.name: rule for rule in _RULES}


def split_mask(
    split: str,
    user_ids: np.ndarray,
    timestamps: np.ndarray | None,
    *,
    seed: int = 0,
    k: int = 10,
    item_ids: np.ndarray | None = None,
    test_fraction: float = 0.2,
    cutoff: int | None = None,
    cutoff_quantile: float = 0.8,
    cold_fraction: float = 0.1,
) -> tuple[np.ndarray, str]:
    """Boolean test mask over ratings in file order for split ``split``, and the rule in words.

    Parameters
    ----------
    split : str
        One of :data:`SPLITS`.
    user_ids, item_ids : numpy.ndarray of int, shape (n,)
        0-based indices of each rating, in file order (``item_ids`` for ``cold-items``).
    timestamps : numpy.ndarray of int, shape (n,), or None
        Needed by ``temporal`` and ``time-cutoff``.
    seed, k, test_fraction, cutoff, cutoff_quantile, cold_fraction
        The split options (see ``bench.datasets.registry.SPLIT_OPTIONS``).

    Returns
    -------
    mask : numpy.ndarray of bool, shape (n,)
        ``True`` for test rows.
    rule : str
        E.g. ``"temporal leave-last-10-out"``.

    Raises
    ------
    ValueError
        An unknown split, or one whose needs (timestamps, item ids) are missing.
    """
    rule = SPLITS.get(split) if isinstance(split, str) else None
    if rule is None:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    if "timestamps" in rule.needs and timestamps is None:
        raise ValueError(f"split {split!r} needs timestamps")
    if "item_features" in rule.needs and item_ids is None:
        raise ValueError(f"split {split!r} needs item ids")
    args = {
        "seed": seed,
        "k": k,
        "test_fraction": test_fraction,
        "cutoff": cutoff,
        "cutoff_quantile": cutoff_quantile,
        "cold_fraction": cold_fraction,
    }
    return rule.mask(np.asarray(user_ids), item_ids, timestamps, args)


def validation_mask(
    split: str,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    timestamps: np.ndarray | None,
    positive: np.ndarray,
    seed: int,
    split_args: Mapping[str, Any],
    full_timestamps: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """The validation rows carved from a split's train rows (CONTRACTS item 4), and the rule.

    A split that reproduces a fixed file gets a seeded :data:`VALIDATION_FRACTION`
    carve of each user's train rows (never the user's last train positive); any
    other split is re-applied to the train rows (a fixed ``cutoff`` as the same
    share of train rows, from ``full_timestamps``).

    Parameters
    ----------
    split : str
    user_ids, item_ids, timestamps, positive : numpy.ndarray, shape (n_train,)
        The train rows.
    seed : int
        The ``validation_seed``.
    split_args : mapping
        The split's own options (as :func:`split_mask` takes them).
    full_timestamps : numpy.ndarray, optional
        Every row's timestamp, for a fixed ``cutoff``.
    """
    if SPLITS[split].fixed:
        stamps = np.arange(user_ids.shape[0]) if timestamps is None else timestamps
        mask = holdout_fraction_mask(
            user_ids, stamps, positive, VALIDATION_FRACTION, np.random.default_rng(seed)
        )
        return mask, (
            f"random {VALIDATION_FRACTION:g} of each user's train rows, never the user's "
            f"last train positive (validation_seed {seed})"
        )
    args = dict(split_args, seed=seed)
    if split == "time-cutoff" and args.get("cutoff") is not None:
        # Re-apply the same rule: the same share of train rows before the new cut-off.
        share = float(np.mean(full_timestamps < args.pop("cutoff")))
        args["cutoff_quantile"] = min(max(share, 1e-6), 1 - 1e-6)
    mask, rule = split_mask(split, user_ids, timestamps, item_ids=item_ids, **args)
    return mask, f"{rule}, re-applied to train (validation_seed {seed})"
