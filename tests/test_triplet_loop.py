"""The triplet loop moved into TripletRecommender without changing any number."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bench.datasets.synthetic import synthetic
from models.base import TripletRecommender

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "triplet_scores.py"
#: The last commit with the three hand-written loops.
BEFORE = "e6deb22"


@pytest.mark.slow
def test_scores_are_bit_identical_to_the_copied_loops(tmp_path):
    """Scores of every triplet model/preset equal those of the pre-refactor tree, bit for bit."""
    pytest.importorskip("torch")
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    archive = tmp_path / "old.tar"
    made = subprocess.run(
        [git, "-C", str(ROOT), "archive", "-o", str(archive), BEFORE],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this clone: {made.stderr.strip()}")
    old_tree = tmp_path / "old"
    with tarfile.open(archive) as tar:
        tar.extractall(old_tree, filter="data")
    saved = tmp_path / "old.npz"
    env = {**os.environ, "PYTHONPATH": str(old_tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, str(SCRIPT), "save", str(saved)], env=env, cwd=old_tree, check=True
    )
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "compare", str(saved)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 differ" in done.stdout


class _Dot(TripletRecommender):
    """A triplet model written against the shared loop: a step and scoring, nothing else."""

    def __init__(
        self,
        *,
        latent_dim: int = 4,
        learning_rate: float = 0.1,
        epochs: int = 3,
        negatives: str = "uniform",
    ) -> None:
        self.latent_dim = latent_dim
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.negatives = negatives

    def _start_training(self, train, seed, features):
        gen = np.random.default_rng(seed)
        self._users = gen.normal(0, 0.1, (train.num_users, self.latent_dim))
        self._items = gen.normal(0, 0.1, (train.num_items, self.latent_dim))

    def _train_epoch(self, triplets):
        u, p, n = triplets.user_ids, triplets.pos_item_ids, triplets.neg_item_ids
        margin = 1 - np.einsum("ij,ij->i", self._users[u], self._items[p] - self._items[n])
        active = (margin > 0)[:, None] * self.learning_rate
        grad_u = active * (self._items[p] - self._items[n])
        np.add.at(self._items, p, active * self._users[u])
        np.add.at(self._items, n, -active * self._users[u])
        np.add.at(self._users, u, grad_u)
        return float(np.maximum(margin, 0).mean())

    def _score_pairs(self, user_ids, item_ids):
        return np.einsum("ij,ij->i", self._users[user_ids], self._items[item_ids])

    def score(self, user_ids):
        user_ids = self._check_user_ids(user_ids)
        return self._finish_scores(self._users[user_ids] @ self._items.T)


def test_a_new_triplet_model_only_writes_its_step_and_scoring():
    from bench.testing import check_recommender

    data = synthetic(num_users=40, num_items=30, num_positives=400, test_per_user=2, seed=1)
    model = check_recommender(_Dot, data=data, epochs=None)
    assert len(model.loss_history_) == 3
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_the_loop_rejects_a_sampler_of_another_catalogue():
    from bench.sampler import NegativeSampler

    data = synthetic(num_users=40, num_items=30, num_positives=400, test_per_user=2, seed=1)
    other = synthetic(num_users=40, num_items=31, num_positives=400, test_per_user=2, seed=1)
    with pytest.raises(ValueError, match="sampler draws from 31 items but train has 30"):
        _Dot().fit(data.train, sampler=NegativeSampler(other.train), rng=np.random.default_rng(0))
