"""Interactions: validation, immutability, CSR conversion."""

from __future__ import annotations

import numpy as np
import pytest

from bench.interactions import Interactions


def test_valid_object_is_int32_readonly_and_converts():
    x = Interactions([0, 1, 1], [2, 0, 2], num_users=3, num_items=4, weights=[5, 4, 1])
    assert x.user_ids.dtype == np.int32 and x.item_ids.dtype == np.int32
    assert x.weights.dtype == np.float32
    assert len(x) == 3 and x.shape == (3, 4)
    with pytest.raises(ValueError):
        x.user_ids[0] = 2
    with pytest.raises(AttributeError):
        x.num_users = 5
    csr = x.to_csr()
    assert csr.shape == (3, 4) and csr.dtype == np.float32
    np.testing.assert_array_equal(csr.toarray(), [[0, 0, 5, 0], [4, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(x.to_bool_csr().toarray(), csr.toarray() > 0)
    np.testing.assert_array_equal(x.user_counts(), [1, 2, 0])
    np.testing.assert_array_equal(x.item_counts(), [1, 0, 2, 0])


def test_input_arrays_are_copied():
    users = np.array([0, 1])
    x = Interactions(users, [0, 0], num_users=2, num_items=1)
    users[0] = 1
    assert x.user_ids[0] == 0


def test_select_and_with_weights():
    x = Interactions([0, 1, 2], [0, 1, 2], num_users=3, num_items=3, weights=[1, 2, 3])
    y = x.select(np.array([True, False, True]))
    np.testing.assert_array_equal(y.item_ids, [0, 2])
    np.testing.assert_array_equal(y.weights, [1, 3])
    assert x.with_weights(None).weights is None
    with pytest.raises(ValueError, match="mask has shape"):
        x.select(np.array([True]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_ids": [0, 1], "item_ids": [0]}, "differ in length: 2 != 1"),
        (
            {"user_ids": [0, -3], "item_ids": [0, 1]},
            "user_ids contains negative id -3 at position 1",
        ),
        (
            {"user_ids": [0, 5], "item_ids": [0, 1]},
            r"user_ids contains id 5 at position 1, out of range for num_users=3",
        ),
        ({"user_ids": [0, 1], "item_ids": [0, 9]}, r"item_ids contains id 9 .*num_items=4"),
        ({"user_ids": [0.5], "item_ids": [0]}, "must hold integers"),
        (
            {"user_ids": [0], "item_ids": [0], "num_users": 0},
            "num_users must be a positive integer",
        ),
        ({"user_ids": [0], "item_ids": [0], "weights": [np.nan]}, "non-finite value nan at 0"),
        ({"user_ids": [0], "item_ids": [0], "weights": [1, 2]}, "weights has length 2, expected 1"),
    ],
)
def test_bad_input_names_the_offending_value(kwargs, message):
    args = {"num_users": 3, "num_items": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        Interactions(**args)


def test_empty_interactions_are_allowed():
    x = Interactions(np.array([], int), np.array([], int), num_users=2, num_items=2)
    assert len(x) == 0 and x.to_csr().nnz == 0
