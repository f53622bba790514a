"""Save the scores of every triplet model/preset on the tiny fixture (run from a given tree)."""

import sys

import numpy as np
import scipy.sparse as sp

from bench.dataset import SideFeatures
from bench.registry import default_registry
from bench.synthetic import synthetic

out = sys.argv[1]
data = synthetic(num_users=60, num_items=80, num_positives=1_200, test_per_user=2, seed=7)
gen = np.random.default_rng(3)
ug = gen.integers(0, 4, data.num_users)
users = sp.csr_matrix(
    (np.ones(data.num_users), (np.arange(data.num_users), ug)), shape=(data.num_users, 4)
)
ig = gen.integers(0, 5, data.num_items)
items = sp.csr_matrix(
    (np.ones(data.num_items), (np.arange(data.num_items), ig)), shape=(data.num_items, 5)
)
features = (
    SideFeatures(users, tuple(f"g{g}" for g in range(4))),
    SideFeatures(items, tuple(f"k{g}" for g in range(5))),
)
reg = default_registry()
saved = {}
for name in ["keras-bilinear", "keras-deep", "torch-bilinear", "torch-deep", "fm"]:
    entry = reg.get(name)
    for preset in [None, *sorted(entry.presets)]:
        for neg in [None, "hard"]:
            model = reg.make(name, preset)
            p = model.get_params()
            over = {"epochs": 2}
            if neg:
                if p["negatives"] == "hard":
                    continue
                over["negatives"] = "hard"
            model.set_params(**over)
            model.fit(
                data.train,
                sampler=model.make_sampler(data.train),
                rng=np.random.default_rng(11),
                features=features if model.uses_features else None,
            )
            key = f"{name}|{preset or ''}|{neg or ''}"
            saved[key] = model.score(np.arange(data.num_users))
            print(key, float(saved[key].sum()), flush=True)
np.savez(out, **saved)
