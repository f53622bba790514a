"""The one immutable data object that flows through rsbench: user-item interactions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["Interactions"]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Interactions:
    """Immutable (user, item[, weight]) interactions over a fixed catalogue.

    Parameters
    ----------
    user_ids, item_ids : array-like of int, shape (n,)
        0-based indices, stored as read-only int32 arrays.
    num_users, num_items : int
        Sizes of the user and item index spaces. Users and items without any
        interaction still exist (the full catalogue is ``range(num_items)``).
    weights : array-like of float, shape (n,), optional
        Stored as read-only float32 (for example the explicit rating).

    Raises
    ------
    ValueError
        Length mismatch, negative ids, ids out of range, non-finite weights,
        or non-positive sizes; the message names the offending value.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    num_users: int
    num_items: int
    weights: np.ndarray | None = None
    _csr: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        users = np.asarray(self.user_ids)
        items = np.asarray(self.item_ids)
        for name, arr in (("user_ids", users), ("item_ids", items)):
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
        if users.shape != items.shape:
            raise ValueError(
                f"user_ids and item_ids differ in length: {users.shape[0]} != {items.shape[0]}"
            )
        for name, size in (("num_users", self.num_users), ("num_items", self.num_items)):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                raise ValueError(f"{name} must be a positive integer, got {size!r}")
        for name, arr, size in (
            ("user_ids", users, self.num_users),
            ("item_ids", items, self.num_items),
        ):
            if arr.size:
                low, high = int(arr.min()), int(arr.max())
                if low < 0:
                    pos = int(np.argmin(arr))
                    raise ValueError(f"{name} contains negative id {low} at position {pos}")
                if high >= size:
                    pos = int(np.argmax(arr))
                    raise ValueError(
                        f"{name} contains id {high} at position {pos}, out of range for "
                        f"{'num_users' if name == 'user_ids' else 'num_items'}={size}"
                    )
        object.__setattr__(self, "user_ids", _frozen(users.astype(np.int32)))
        object.__setattr__(self, "item_ids", _frozen(items.astype(np.int32)))
        object.__setattr__(self, "num_users", int(self.num_users))
        object.__setattr__(self, "num_items", int(self.num_items))
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=np.float32)
            if weights.shape != users.shape:
                raise ValueError(
                    f"weights has length {weights.shape[0] if weights.ndim else 0}, "
                    f"expected {users.shape[0]}"
                )
            bad = ~np.isfinite(weights)
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise ValueError(f"weights contains non-finite value {weights[pos]} at {pos}")
            object.__setattr__(self, "weights", _frozen(weights))

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_users, num_items)``."""
        return (self.num_users, self.num_items)

    def to_csr(self) -> sp.csr_matrix:
        """Return a float32 CSR matrix of shape ``(num_users, num_items)``.

        Values are the weights (1.0 when there are none); duplicate pairs are
        summed. The matrix is built once and cached; callers get a copy-safe
        view they must not modify.
        """
        if not self._csr:
            data = (
                np.ones(len(self), dtype=np.float32)
                if self.weights is None
                else np.asarray(self.weights, dtype=np.float32)
            )
            mat = sp.csr_matrix(
                (data, (self.user_ids, self.item_ids)), shape=self.shape, dtype=np.float32
            )
            mat.sum_duplicates()
            mat.sort_indices()
            self._csr.append(mat)
        return self._csr[0]

    def to_bool_csr(self) -> sp.csr_matrix:
        """Return a boolean CSR matrix marking every (user, item) pair present."""
        mat = self.to_csr().astype(bool)
        mat.eliminate_zeros()
        return mat

    def with_weights(self, weights: np.ndarray | None) -> Interactions:
        """Return a copy with other weights (``None`` drops them)."""
        return Interactions(self.user_ids, self.item_ids, self.num_users, self.num_items, weights)

    def select(self, mask: np.ndarray) -> Interactions:
        """Return the interactions where ``mask`` (boolean, shape (n,)) is true."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.user_ids.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected {self.user_ids.shape}")
        weights = None if self.weights is None else self.weights[mask]
        return Interactions(
            self.user_ids[mask], self.item_ids[mask], self.num_users, self.num_items, weights
        )

    def user_counts(self) -> np.ndarray:
        """Number of interactions per user, int64 array of shape (num_users,)."""
        return np.bincount(self.user_ids, minlength=self.num_users)

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item, int64 array of shape (num_items,)."""
        return np.bincount(self.item_ids, minlength=self.num_items)

    def __repr__(self) -> str:
        return (
            f"Interactions(n={len(self)}, num_users={self.num_users}, "
            f"num_items={self.num_items}, weights={'yes' if self.weights is not None else 'no'})"
        )
