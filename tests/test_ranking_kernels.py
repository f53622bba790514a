"""The kernels of the ranking pass against the frozen reference implementation.

``metrics._reference`` is the ranking pass as it was before issue 18 (comparison
passes or a full sort per row). The counts it produces are integers, so the
new pass must give *identical* metric values, whatever the kernel (compiled
with numba, the default, or numpy), the bucketing resolution, the tiling or
the number of threads.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import metrics.ranking as ranking
from metrics import Evaluator, evaluate
from metrics._reference import reference_evaluate

KS = (1, 3, 10, 50)


KERNELS = ["compiled", "numpy"]
# Settings that only the numpy kernel reads: patching them selects that kernel.
NUMPY_ONLY = {"_SORT_MIN_GROUPS", "_COUNT_TILE"}


@contextmanager
def patched(**values):
    if NUMPY_ONLY & set(values):
        values.setdefault("_KERNEL", "numpy")
    with mock.patch.multiple(ranking, **values):
        yield


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a["user"].to_numpy(), b["user"].to_numpy())
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-12)


def random_case(rng, num_users, num_items, *, levels=None, dtype=np.float32, test_rate=0.1):
    if levels is None:
        scores = rng.standard_normal((num_users, num_items)).astype(dtype)
    else:
        scores = rng.integers(0, levels, size=(num_users, num_items)).astype(dtype)
    test = rng.random((num_users, num_items)) < test_rate
    exclude = (rng.random((num_users, num_items)) < 0.1) & ~test
    exclude |= test & (rng.random((num_users, num_items)) < 0.05)  # some test items excluded
    return scores, sp.csr_matrix(test), sp.csr_matrix(exclude)


@pytest.mark.parametrize("ties", ["expected", "pessimistic"])
@pytest.mark.parametrize(
    ("levels", "dtype"),
    [(None, np.float32), (None, np.float64), (7, np.float32), (300, np.float32), (3, np.int64)],
)
@pytest.mark.parametrize("count_from", [0, 2, None, 10**9])
def test_counting_kernel_equals_reference(rng, ties, levels, dtype, count_from):
    scores, test, exclude = random_case(rng, 40, 997, levels=levels, dtype=dtype)
    with patched(_SORT_MIN_GROUPS=count_from):
        ours = evaluate(scores, test, exclude, ks=KS, ties=ties)
    assert_same(ours, reference_evaluate(scores, test, exclude, ks=KS, ties=ties))


@pytest.mark.parametrize("buckets_per_group", [1, 2, 64, 10**6])
@pytest.mark.parametrize("tile", [1, 997 * 3, 1 << 20])
@pytest.mark.parametrize("threads", [1, 3])
def test_resolution_tiles_and_threads_do_not_change_values(rng, buckets_per_group, tile, threads):
    scores, test, exclude = random_case(rng, 23, 997, levels=50)
    reference = reference_evaluate(scores, test, exclude, ks=KS)
    with patched(
        _SORT_MIN_GROUPS=0,
        _BUCKETS_PER_GROUP=buckets_per_group,
        _COUNT_TILE=tile,
        _THREADS=threads,
    ):
        assert_same(evaluate(scores, test, exclude, ks=KS), reference)


def test_the_compiled_kernel_is_the_default():
    """numba is a dependency, so the default kernel is the compiled one."""
    assert ranking._KERNEL is None
    assert ranking._kernel() == "compiled"
    with patched(_KERNEL="fortran"), pytest.raises(ValueError, match="kernel must be one of"):
        ranking._kernel()


@pytest.mark.parametrize("ties", ["expected", "pessimistic"])
@pytest.mark.parametrize(
    ("levels", "dtype"),
    [(None, np.float32), (None, np.float64), (7, np.float32), (300, np.float32), (3, np.int64)],
)
def test_compiled_kernel_equals_reference(rng, ties, levels, dtype):
    scores, test, exclude = random_case(rng, 40, 997, levels=levels, dtype=dtype)
    with patched(_KERNEL="compiled"):
        ours = evaluate(scores, test, exclude, ks=KS, ties=ties)
    assert_same(ours, reference_evaluate(scores, test, exclude, ks=KS, ties=ties))


@pytest.mark.parametrize("buckets_per_group", [1, 64, 10**6])
@pytest.mark.parametrize("max_buckets", [64, 300, 1 << 14])
@pytest.mark.parametrize(("tile_rows", "threads"), [(1, 1), (7, 3), (32, 2)])
def test_compiled_resolution_tiles_and_threads_do_not_change_values(
    rng, buckets_per_group, max_buckets, tile_rows, threads
):
    """Few buckets put many candidates in the groups' buckets (the placed-last path)."""
    scores, test, exclude = random_case(rng, 23, 997, levels=50, test_rate=0.3)
    reference = reference_evaluate(scores, test, exclude, ks=KS)
    with patched(
        _KERNEL="compiled",
        _BUCKETS_PER_GROUP=buckets_per_group,
        _COMPILED_MAX_BUCKETS=max_buckets,
        _COMPILED_TILE_ROWS=tile_rows,
        _THREADS=threads,
    ):
        assert_same(evaluate(scores, test, exclude, ks=KS), reference)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compiled_kernel_names_the_users_with_scores_that_are_not_finite(rng, bad):
    scores = rng.standard_normal((5, 80)).astype(np.float32)
    scores[3, 17] = bad  # an evaluated row: found inside the kernel
    test = rng.random((5, 80)) < 0.2
    test[:, 0] = True  # every row evaluated: no check before the kernel
    test = sp.csr_matrix(test)
    with patched(_KERNEL="compiled"), pytest.raises(ValueError, match=r"users \[13\]"):
        evaluate(scores, test, ks=KS, user_ids=np.arange(10, 15))


@pytest.mark.parametrize("kernel", KERNELS)
def test_one_group_rows_zero_signs_and_constant_rows(rng, kernel):
    scores = rng.standard_normal((6, 300)).astype(np.float32)
    scores[0] = 0.0  # constant row: one group of every positive, everything tied
    scores[1, ::2] = -0.0  # -0.0 and +0.0 tie
    scores[1, 1::2] = 0.0
    test = np.zeros((6, 300), dtype=bool)
    test[:, [3, 10]] = True
    test[2, :] = False
    test[2, 7] = True  # a single positive: a single group, span 0
    exclude = np.zeros_like(test)
    exclude[3, :150] = True
    args = (scores, sp.csr_matrix(test), sp.csr_matrix(exclude))
    knobs = {"_SORT_MIN_GROUPS": 0} if kernel == "numpy" else {"_KERNEL": kernel}
    with patched(**knobs):
        ours = evaluate(*args, ks=KS)
    assert_same(ours, reference_evaluate(*args, ks=KS))
    assert ours["auc"].iloc[0] == 0.5 and ours["auc"].iloc[1] == 0.5


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_score_ranges_that_overflow_fall_back_exactly(rng, dtype, kernel):
    """Group scores near +-max: the bucket scale is not finite, those rows are searched."""
    big = np.finfo(dtype).max
    scores = rng.standard_normal((5, 200)).astype(dtype)
    scores[0, :100] = big
    scores[0, 100:] = -big
    scores[1, 50] = big / 2
    scores[2, 60] = np.finfo(dtype).tiny  # tiny span: huge but finite scale
    test = rng.random((5, 200)) < 0.1
    test[0, [1, 150]] = True
    test[1, 50] = True
    test[2, [60, 61]] = True
    args = (scores, sp.csr_matrix(test), None)
    knobs = {"_SORT_MIN_GROUPS": 0} if kernel == "numpy" else {"_KERNEL": kernel}
    with patched(**knobs):
        ours = evaluate(*args, ks=KS)
    assert_same(ours, reference_evaluate(*args, ks=KS))


@pytest.mark.parametrize("kernel", KERNELS)
def test_evaluator_blocks_equal_reference(rng, kernel):
    scores, test, exclude = random_case(rng, 70, 500, levels=40)

    class Table:
        def score(self, user_ids):
            return scores[user_ids]

    with patched(_KERNEL=kernel):
        ours = Evaluator(test, exclude, ks=KS, block_size=16).evaluate(Table())
    assert_same(ours, reference_evaluate(scores, test, exclude, ks=KS))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scores=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(1, 40)),
        elements=st.sampled_from([-2.0, -0.0, 0.0, 0.25, 0.5, 1.0, 3.0])
        | st.floats(-4, 4, width=32),
    ),
    data=st.data(),
    count_from=st.sampled_from([0, 3, "compiled"]),
    buckets=st.sampled_from([1, 3, 64]),
)
def test_property_counting_kernel_equals_reference(scores, data, count_from, buckets):
    shape = scores.shape
    test = data.draw(hnp.arrays(bool, shape))
    exclude = data.draw(hnp.arrays(bool, shape))
    args = (scores, sp.csr_matrix(test), sp.csr_matrix(exclude))
    if count_from == "compiled":
        knobs = {"_KERNEL": "compiled", "_COMPILED_MAX_BUCKETS": 64}
    else:
        knobs = {"_SORT_MIN_GROUPS": count_from}
    for ties in ("expected", "pessimistic"):
        with patched(**knobs, _BUCKETS_PER_GROUP=buckets):
            ours = evaluate(*args, ks=(1, 2, 5), ties=ties)
        assert_same(ours, reference_evaluate(*args, ks=(1, 2, 5), ties=ties))


def test_warm_up_loads_the_compiled_kernels_for_both_float_types():
    """The runner calls warm_up before its clocks: afterwards no kernel compiles or loads."""
    import metrics._compiled as compiled
    from metrics import warm_up

    assert warm_up() >= 0
    for kernel in (compiled.above_and_tied_rows, compiled.top_candidate_rows):
        dtypes = {str(signature[0].dtype) for signature in kernel.signatures}
        assert {"float32", "float64"} <= dtypes, (kernel, dtypes)
    with patched(_KERNEL="numpy"):
        assert warm_up() < 0.05  # nothing to load
