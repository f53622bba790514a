"""The common negative sampler: distributions, exactness, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.datasets.synthetic import synthetic_interactions
from bench.interactions import Interactions
from bench.sampler import STRATEGIES, NegativeSampler


@pytest.fixture(scope="module")
def train():
    return synthetic_interactions(300, 200, 9_000, seed=4)


def _counts(values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(values, minlength=n)


@pytest.mark.parametrize("strategy", ["uniform", "uniform-unseen", "popularity"])
def test_epoch_is_a_shuffled_pass_over_every_positive(train, strategy):
    triplets = NegativeSampler(train, strategy=strategy).sample(np.random.default_rng(0))
    assert len(triplets) == len(train)
    for arr in (triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids):
        assert arr.dtype == np.int32
    got = sorted(zip(triplets.user_ids.tolist(), triplets.pos_item_ids.tolist()))
    want = sorted(zip(train.user_ids.tolist(), train.item_ids.tolist()))
    assert got == want
    # Shuffled: not in the (user, item) sorted input order.
    assert not np.array_equal(triplets.user_ids, train.user_ids)
    assert triplets.neg_item_ids.min() >= 0
    assert triplets.neg_item_ids.max() < train.num_items


@pytest.mark.parametrize("strategy", ["uniform", "uniform-unseen", "popularity"])
def test_same_seed_same_triplets_new_negatives_each_epoch(train, strategy):
    sampler = NegativeSampler(train, strategy=strategy)
    a = sampler.sample(np.random.default_rng(42))
    b = sampler.sample(np.random.default_rng(42))
    np.testing.assert_array_equal(a.neg_item_ids, b.neg_item_ids)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    rng = np.random.default_rng(42)
    first, second = sampler.sample(rng), sampler.sample(rng)
    assert not np.array_equal(first.neg_item_ids, second.neg_item_ids)


def test_uniform_is_uniform_over_the_catalogue(train):
    sampler = NegativeSampler(train, strategy="uniform")
    rng = np.random.default_rng(1)
    negs = np.concatenate([sampler.sample(rng).neg_item_ids for _ in range(10)])
    counts = _counts(negs, train.num_items)
    assert stats.chisquare(counts).pvalue > 1e-4
    # The notebook's sampler can hit positives: it does, at about the positive rate.
    t = sampler.sample(rng)
    seen_rate = sampler.is_seen(t.user_ids, t.neg_item_ids).mean()
    density = len(train) / (train.num_users * train.num_items)
    assert 0 < seen_rate < 3 * density


def test_uniform_unseen_never_returns_a_train_positive(train):
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    rng = np.random.default_rng(2)
    positives = set(zip(train.user_ids.tolist(), train.item_ids.tolist()))
    for _ in range(3):
        t = sampler.sample(rng)
        pairs = set(zip(t.user_ids.tolist(), t.neg_item_ids.tolist()))
        assert not pairs & positives


def test_uniform_unseen_is_uniform_over_each_users_unseen_items():
    # One user positive on items 0..4 of 10: negatives uniform over 5..9.
    train = Interactions(np.zeros(5, int), np.arange(5), num_users=1, num_items=10)
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    rng = np.random.default_rng(3)
    negs = np.concatenate([sampler.sample(rng).neg_item_ids for _ in range(2_000)])
    counts = _counts(negs, 10)
    assert counts[:5].sum() == 0
    assert stats.chisquare(counts[5:]).pvalue > 1e-4


def test_uniform_unseen_sorted_key_path_matches_bitmap(monkeypatch, train):
    import bench.sampler as sampler_module

    monkeypatch.setattr(sampler_module, "_BITMAP_MAX_CELLS", 0)
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    assert sampler._seen[0] == "rows"
    t = sampler.sample(np.random.default_rng(5))
    assert not sampler.is_seen(t.user_ids, t.neg_item_ids).any()
    assert sampler.is_seen(train.user_ids, train.item_ids).all()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_popularity_follows_count_to_the_alpha(train, alpha):
    sampler = NegativeSampler(train, strategy="popularity", alpha=alpha)
    rng = np.random.default_rng(6)
    negs = np.concatenate([sampler.sample(rng).neg_item_ids for _ in range(20)])
    weights = np.maximum(train.item_counts(), 1).astype(float) ** alpha
    expected = weights / weights.sum() * negs.size
    assert stats.chisquare(_counts(negs, train.num_items), expected).pvalue > 1e-4


def test_hard_keeps_the_first_violating_candidate():
    # 1 user, positive item 0; scores make item 3 violate and items 1,2 not.
    train = Interactions([0], [0], num_users=1, num_items=6)
    item_scores = np.array([1.0, -5.0, -5.0, 0.9, 0.95, -5.0])

    def score_pairs(users, items):
        return item_scores[items]

    sampler = NegativeSampler(train, strategy="hard", candidates=50, margin=0.5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        neg = sampler.sample(rng, score_pairs=score_pairs).neg_item_ids[0]
        assert neg in (3, 4)  # only they violate 0.9 > 1.0 - 0.5; never the positive


def test_hard_shifts_negatives_towards_high_scores(train):
    item_scores = np.linspace(-1, 1, train.num_items)

    def score_pairs(users, items):
        return item_scores[items]

    rng = np.random.default_rng(7)
    hard = NegativeSampler(train, strategy="hard", candidates=10, margin=0.1)
    uniform = NegativeSampler(train, strategy="uniform")
    h = hard.sample(rng, score_pairs=score_pairs).neg_item_ids
    u = uniform.sample(rng).neg_item_ids
    assert item_scores[h].mean() > item_scores[u].mean() + 0.3
    t = hard.sample(rng, score_pairs=score_pairs)
    assert not hard.is_seen(t.user_ids, t.neg_item_ids).any()  # never a train positive


def test_hard_requires_a_scorer(train):
    with pytest.raises(ValueError, match="score_pairs"):
        NegativeSampler(train, strategy="hard").sample(np.random.default_rng(0))


def test_bad_input():
    train = Interactions([0, 1], [0, 1], num_users=2, num_items=3)
    with pytest.raises(ValueError, match="unknown sampling strategy 'warp'"):
        NegativeSampler(train, strategy="warp")
    with pytest.raises(ValueError, match="alpha"):
        NegativeSampler(train, strategy="popularity", alpha=-1)
    with pytest.raises(ValueError, match="candidates"):
        NegativeSampler(train, strategy="hard", candidates=0)
    with pytest.raises(TypeError, match="Interactions"):
        NegativeSampler([(0, 1)])
    with pytest.raises(TypeError, match="Generator"):
        NegativeSampler(train).sample(0)
    full = Interactions([0, 0, 0], [0, 1, 2], num_users=1, num_items=3)
    with pytest.raises(ValueError, match="user 0 is positive on all 3 items"):
        NegativeSampler(full, strategy="uniform-unseen")
    assert set(STRATEGIES) == {"uniform", "uniform-unseen", "popularity", "hard"}


# ---------------------------------------------------------------------------
# Scale (issue 18): the seen-pair index, its memory bound, chunked hard negatives,
# and the same stream of triplets as the pre-issue-18 sampler for the same seed.
# ---------------------------------------------------------------------------
def _reference_epoch(
    train, strategy, rng, score_pairs=None, candidates=10, margin=1.0, rounds=None
):
    """The pre-issue-18 sampler, with a Python set as the seen-pair lookup.

    ``rounds``: rejection rounds before the pending draws are made by rank among
    the user's unseen items, listed by brute force (None: no cap, as before).
    """
    seen_set = set(zip(train.user_ids.tolist(), train.item_ids.tolist()))

    def is_seen(users, items):
        return np.array([(u, i) in seen_set for u, i in zip(users.tolist(), items.tolist())])

    def unseen(users):
        neg = rng.integers(0, train.num_items, size=users.shape[0], dtype=np.int32)
        todo = np.flatnonzero(is_seen(users, neg))
        done = 0
        while todo.size and (rounds is None or done < rounds):
            redraw = rng.integers(0, train.num_items, size=todo.size, dtype=np.int32)
            neg[todo] = redraw
            todo = todo[is_seen(users[todo], redraw)]
            done += 1
        if todo.size:
            lists = {
                u: [i for i in range(train.num_items) if (u, i) not in seen_set]
                for u in set(users[todo].tolist())
            }
            sizes = np.array([len(lists[u]) for u in users[todo].tolist()])
            ranks = rng.integers(0, sizes)
            neg[todo] = [lists[u][r] for u, r in zip(users[todo].tolist(), ranks.tolist())]
        return neg

    order = rng.permutation(len(train))
    users, pos = train.user_ids[order], train.item_ids[order]
    if strategy == "uniform-unseen":
        return users, pos, unseen(users)
    n, c = users.shape[0], candidates
    cand = rng.integers(0, train.num_items, size=n * c, dtype=np.int32).reshape(n, c)
    rep = np.repeat(users, c)
    seen = is_seen(rep, cand.ravel()).reshape(n, c)
    cs = np.asarray(score_pairs(rep, cand.ravel()), dtype=np.float64).reshape(n, c)
    ps = np.asarray(score_pairs(users, pos), dtype=np.float64)
    violates = (cs > ps[:, None] - margin) & ~seen
    fallback = np.where(seen, -np.inf, cs).argmax(axis=1)
    first = np.where(violates.any(axis=1), violates.argmax(axis=1), fallback)
    neg = cand[np.arange(n), first]
    all_seen = seen.all(axis=1)
    if all_seen.any():
        neg[all_seen] = unseen(users[all_seen])
    return users, pos, neg


@pytest.fixture(params=["bytemap", "bitmap", "rows"])
def index_kind(request, monkeypatch):
    import bench.sampler as sampler_module

    if request.param != "bytemap":
        monkeypatch.setattr(sampler_module, "_BYTEMAP_MAX_CELLS", 0)
    if request.param == "rows":
        monkeypatch.setattr(sampler_module, "_BITMAP_MAX_CELLS", 0)
    return request.param


def test_is_seen_matches_brute_force_with_unsorted_duplicates_and_empty_users(rng, index_kind):
    # Unsorted pairs with repeats; users 0 and the last two have no positive at all.
    users = rng.integers(1, 37, size=600)
    items = rng.integers(0, 23, size=600)
    train = Interactions(users, items, num_users=40, num_items=23)
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    assert sampler._seen[0] == index_kind
    seen_set = set(zip(users.tolist(), items.tolist()))
    q_users = np.repeat(np.arange(40), 23)
    q_items = np.tile(np.arange(23), 40)
    want = np.array([(u, i) in seen_set for u, i in zip(q_users.tolist(), q_items.tolist())])
    np.testing.assert_array_equal(sampler.is_seen(q_users, q_items), want)
    bound = {
        "bytemap": 40 * 23,
        "bitmap": -(-40 * 23 // 8),
        "rows": 4 * len(seen_set) + 8 * 41,
    }[index_kind]
    # Plus each user's count of unseen items (the range of the rank draw).
    assert sampler.seen_index_bytes == bound + 4 * 40


@pytest.mark.parametrize("rounds", [32, None])
@pytest.mark.parametrize("strategy", ["uniform-unseen", "hard"])
def test_same_stream_as_the_pre_scale_sampler(train, index_kind, strategy, rounds, monkeypatch):
    import bench.sampler as sampler_module

    # Tiny chunks: the chunked hard sampler must consume the generator identically.
    monkeypatch.setattr(sampler_module, "_HARD_CHUNK_PAIRS", 97)
    # The fixture has users positive on 199 of 200 items: with the default cap (32
    # rounds) their pending draws are made by rank; without one (None: as before the
    # cap) rejection goes on, and the stream is the pre-issue-18 sampler's.
    if rounds is None:
        monkeypatch.setattr(sampler_module, "_REJECTION_ROUNDS", 10**9)
    else:
        assert sampler_module._REJECTION_ROUNDS == rounds
    item_scores = np.linspace(-1, 1, train.num_items)
    calls = []

    def score_pairs(users, items):
        calls.append(len(items))
        return item_scores[items] + 0.001 * users

    sampler = NegativeSampler(train, strategy=strategy, candidates=10, margin=0.2)
    got = sampler.sample(np.random.default_rng(11), score_pairs=score_pairs)
    if strategy == "hard":
        assert max(calls) <= 97  # score_pairs never sees more than one chunk
    want = _reference_epoch(
        train, strategy, np.random.default_rng(11), score_pairs, candidates=10, margin=0.2,
        rounds=rounds,
    )  # fmt: skip
    for a, b in zip((got.user_ids, got.pos_item_ids, got.neg_item_ids), want):
        np.testing.assert_array_equal(a, b)


def test_hard_all_seen_rows_fall_back_to_exact_unseen_draws(monkeypatch):
    import bench.sampler as sampler_module

    monkeypatch.setattr(sampler_module, "_HARD_CHUNK_PAIRS", 8)
    # User 0 is positive on 5 of 6 items: with 1 candidate, most draws are all-seen.
    train = Interactions([0] * 5 + [1], [0, 1, 2, 3, 4, 0], num_users=2, num_items=6)
    sampler = NegativeSampler(train, strategy="hard", candidates=1)
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = sampler.sample(rng, score_pairs=lambda u, i: np.zeros(len(i)))
        assert not sampler.is_seen(t.user_ids, t.neg_item_ids).any()


def _nearly_full_train() -> Interactions:
    """User 0 positive on 44 of 47 items, user 1 on 40, users 2-4 on a few, user 5 on none."""
    rng = np.random.default_rng(8)
    rows = [(0, i) for i in range(47) if i not in (3, 20, 46)]
    rows += [(1, i) for i in rng.choice(47, size=40, replace=False)]
    rows += [(u, i) for u in (2, 3, 4) for i in rng.choice(47, size=5, replace=False)]
    users, items = np.array(rows).T
    return Interactions(users, items, num_users=6, num_items=47)


@pytest.mark.parametrize("rounds", [0, 1, 32])
def test_uniform_unseen_draws_by_rank_are_uniform_over_each_users_unseen_items(
    index_kind, rounds, monkeypatch
):
    import bench.sampler as sampler_module

    # rounds=0: every rejected draw is made by rank; tiny chunks split the users.
    monkeypatch.setattr(sampler_module, "_REJECTION_ROUNDS", rounds)
    monkeypatch.setattr(sampler_module, "_RANK_CHUNK_CELLS", 50)
    train = _nearly_full_train()
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    assert sampler._seen[0] == index_kind
    users = np.repeat(np.arange(6), 3_000).astype(np.int32)
    negs = sampler._unseen(users, np.random.default_rng(9))
    positives = set(zip(train.user_ids.tolist(), train.item_ids.tolist()))
    for user in range(6):
        got = negs[users == user]
        unseen = [i for i in range(47) if (user, i) not in positives]
        assert set(got.tolist()) <= set(unseen), f"user {user} got a positive"
        counts = np.bincount(got, minlength=47)[unseen]
        assert stats.chisquare(counts).pvalue > 1e-4, f"user {user}: {counts}"


def test_uniform_unseen_rank_draw_matches_brute_force_ranks(index_kind):
    # The r-th unseen item, r given: against a brute-force list per user.
    train = _nearly_full_train()
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    sampler.is_seen(np.zeros(1, np.int32), np.zeros(1, np.int32))  # build the index
    positives = set(zip(train.user_ids.tolist(), train.item_ids.tolist()))
    users = np.repeat(np.arange(6), 60)
    rng = np.random.default_rng(10)
    got = sampler._unseen_by_rank(users, rng)
    ranks = np.random.default_rng(10).integers(0, sampler._unseen_per_user[users])
    want = [
        [i for i in range(47) if (u, i) not in positives][r]
        for u, r in zip(users.tolist(), ranks.tolist())
    ]
    np.testing.assert_array_equal(got, want)


def test_uniform_unseen_work_is_bounded_for_a_nearly_full_user(monkeypatch):
    # One user positive on 4,997 of 5,000 items: rejection alone would loop for
    # thousands of rounds; the sampler calls is_seen at most 1 + 32 times, plus the rank
    # draw's chunks.
    num_items = 5_000
    items = np.setdiff1d(np.arange(num_items), [7, 2_500, 4_999])
    train = Interactions(np.zeros(items.size, int), items, num_users=1, num_items=num_items)
    sampler = NegativeSampler(train, strategy="uniform-unseen")
    calls = []
    original = NegativeSampler.is_seen

    def counting(self, user_ids, item_ids):
        calls.append(len(user_ids))
        return original(self, user_ids, item_ids)

    monkeypatch.setattr(NegativeSampler, "is_seen", counting)
    t = sampler.sample(np.random.default_rng(11))
    assert set(t.neg_item_ids.tolist()) == {7, 2_500, 4_999}
    assert len(calls) <= 1 + 32 + 1
    # Each negative equally likely: 4,997 draws over 3 items.
    assert stats.chisquare(np.bincount(t.neg_item_ids)[[7, 2_500, 4_999]]).pvalue > 1e-4
