"""Every option is validated once, in bench.config, before anything runs (issue 12 items 7-9).

The command line and TOML files go through the same rules: each bad value
is tried both ways, and both must give exit code 2 with one line naming it,
with no model run and no results folder created.
"""

from __future__ import annotations

import textwrap

import pytest

import bench.datasets
import bench.execution.runner
from bench.cli import main
from bench.config import ConfigError, build_experiment, load_experiment
from bench.execution.spec import MAX_SEED, RunSpec


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fail the test if any run starts: validation must stop bad input first."""

    def refuse(self, spec):
        raise AssertionError(f"a run started: {spec}")

    monkeypatch.setattr(bench.execution.runner.Runner, "run", refuse)


def _cli(argv, tmp_path, capsys) -> str:
    out = tmp_path / "out"
    assert main(["run", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsbench: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists()  # nothing was written either
    return err


def _toml(content: str, tmp_path, capsys) -> str:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(content))
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsbench: error:") and "\n" not in err and "Traceback" not in err
    assert str(cfg) in err  # the file is named
    assert not out.exists()
    return err


# (command-line flags, the same as TOML lines, the message both must give)
SAME_RULES = [
    # item 7: values too large for int64 / what frameworks and parquet take
    (
        ["--epochs", "99999999999999999999"],
        "epochs = 99999999999999999999",
        "must be an integer in",
    ),
    (["--seeds", "99999999999999999999"], "seeds = [99999999999999999999]", "is out of range [0, "),
    (["--seeds", str(MAX_SEED + 1)], f"seeds = [{MAX_SEED + 1}]", f"out of range [0, {MAX_SEED}]"),
    # item 8: min_rating not finite, or outside the 1-5 star scale
    (["--min-rating", "nan"], "min_rating = nan", "must be a finite number"),
    (["--min-rating", "inf"], "min_rating = inf", "must be a finite number"),
    # The range comes from the dataset registry (ML-100K rates 1..5).
    (["--min-rating", "6"], "min_rating = 6", "outside the ratings of 'ml-100k'"),
    (["--min-rating", "-1"], "min_rating = -1", "below the lowest rating of 'ml-100k'"),
    (["--min-rating", "four"], 'min_rating = "four"', "must be a number, got"),
    # item 8: dataset-specific checks, asked of the data layer
    (
        ["--dataset", "synthetic", "--min-rating", "4"],
        'dataset = "synthetic"\nmin_rating = 4',
        "dataset 'synthetic' has no ratings",
    ),
    (["--dataset", "synthetic", "--split", "u1"], 'dataset = "synthetic"\nsplit = "u1"', "split"),
    (["--dataset", "ml1m"], 'dataset = "ml1m"', "unknown dataset 'ml1m'"),
    # item 9: an empty seed list is not seed 0; a repeated seed is an error
    (["--seeds", ""], "seeds = []", "seeds: empty list"),
    (["--seeds", "0,0"], "seeds = [0, 0]", "0 is given more than once"),
    (["--seeds", "0,,1"], None, "empty entry"),
    (["--seeds", "-1"], "seeds = [-1]", "-1 is out of range [0, "),
    # other ranges
    (["--ks", "0"], "ks = [0]", "0 is out of range [1, "),
    (["--ks", "1e40"], "ks = [2.5]", "is not an integer"),
    (["--ks", "99999999999999999999"], "ks = [1e40]", "is out of range [1, 2147483647]"),
    (["--epochs", "0"], "epochs = 0", "must be an integer in [1, "),
    (["--epochs", "2.5"], "epochs = 2.5", "must be an integer"),
    (["--timeout-s", "0"], "timeout_s = 0", "must be a finite number in (0, inf), got"),
    (["--timeout-s", "nan"], "timeout_s = nan", "must be a finite number in (0, inf)"),
    (["--max-memory-mb", "-5"], "max_memory_mb = -5", "max-memory-mb"),
    (["--no-isolate", "--timeout-s", "5"], "isolate = false\ntimeout_s = 5", "need isolated runs"),
    (["--ties", "optimistic"], 'ties = "optimistic"', "ties must be one of"),
    (["--exclude", "all"], 'exclude = "all"', "exclude must be one of"),
]


@pytest.mark.parametrize(("flags", "toml", "message"), SAME_RULES)
def test_command_line_and_toml_share_one_validation(
    nothing_runs, tmp_path, capsys, flags, toml, message
):
    err = _cli(["--models", "popularity", *flags], tmp_path, capsys)
    assert message.replace("max-memory-mb", "--max-memory-mb") in err
    if toml is not None:
        err = _toml(f'models = ["popularity"]\n{toml}\n', tmp_path, capsys)
        assert message.replace("max-memory-mb", "max_memory_mb") in err
    # Dataset-specific rules (the registry's message names the dataset) are exempt.
    registry_rule = "'ml-100k'" in message
    if (
        flags[0].startswith("--")
        and flags[0] not in ("--dataset", "--no-isolate")
        and not registry_rule
    ):
        key = flags[0][2:].replace("-", "_")
        assert f"{flags[0]}" in _cli(["--models", "popularity", *flags], tmp_path, capsys)
        if toml is not None:
            assert f"exp.toml: {key}" in err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("out = 5", "out must be a non-empty string, got 5"),  # item 7
        ('out = ""', "out must be a non-empty string"),
        ("name = 3", "name must be a non-empty string"),
        ("models = 3", "expected a list of models, got 3"),
        ('models = [{ name = "popularity", seeds = [1, 1] }]', "given more than once"),
        ('models = [{ name = "popularity", epochs = -2 }]', "epochs of 'popularity' must be"),
        ('models = [{ name = "popularity", preset = 4 }]', "preset of 'popularity' must be"),
        ('dataset = "synthetic"\ndataset_options = { num_users = -5 }', "num_users"),  # item 8
        ('dataset = "synthetic"\ndataset_options = { num_user = 5 }', "unknown option(s)"),
        ('dataset = "synthetic"\ndataset_options = { num_users = 5000 }', "below 2 per user"),
        ("dataset_options = { num_users = 50 }", "unknown option(s) ['num_users'] for 'ml-100k'"),
        ("fit_time_factor = nan", "fit_time_factor must be a finite number"),
        ('isolate = "yes"', "isolate must be true or false"),
        ("curves = 1", "curves must be true or false"),
    ],
)
def test_toml_values_are_checked_before_anything_runs(
    nothing_runs, tmp_path, capsys, toml, message
):
    models = "" if toml.startswith("models") else 'models = ["popularity"]\n'
    assert message in _toml(f"{models}{toml}\n", tmp_path, capsys)


def test_seeds_that_reached_the_parquet_writer_now_fail_up_front(nothing_runs, tmp_path, capsys):
    # Issue 12 item 7: seeds = [99999999999999999999] raised OverflowError while
    # writing per_user.parquet, after the model had run.
    err = _toml('models = ["popularity"]\nseeds = [99999999999999999999]\n', tmp_path, capsys)
    assert "seeds: 99999999999999999999 is out of range [0, 4294967295]" in err


def test_the_largest_seed_is_a_valid_run_spec():
    assert RunSpec(model="popularity", seed=MAX_SEED).seed == MAX_SEED
    with pytest.raises(ValueError, match="seed must be <= 4294967295"):
        RunSpec(model="popularity", seed=MAX_SEED + 1)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1 and <= 2147483647"):
        RunSpec(model="popularity", epochs=2**31)


def test_defaults_and_overrides(tmp_path):
    experiment = build_experiment({"models": "popularity"})
    assert experiment.isolate is True  # crash containment is the CLI default
    assert (experiment.timeout_s, experiment.max_memory_mb) == (None, None)
    assert [s.seed for s in experiment.specs] == [0]
    cfg = tmp_path / "exp.toml"
    cfg.write_text(
        'models = ["popularity", { name = "random", epochs = 3 }]\nseeds = [4, 2]\n'
        "timeout_s = 60\nmax_memory_mb = 2048\nepochs = 2\n"
    )
    suite = load_experiment(cfg)
    assert (suite.timeout_s, suite.max_memory_mb) == (60.0, 2048.0)
    assert [(s.model, s.seed, s.epochs) for s in suite.specs] == [
        ("popularity", 4, 2),
        ("popularity", 2, 2),
        ("random", 4, 3),
        ("random", 2, 3),
    ]
    # Command-line values beat the file's, --epochs the per-model epochs too.
    forced = load_experiment(cfg, overrides={"epochs": "5", "timeout_s": "1.5", "out": "x"})
    assert {s.epochs for s in forced.specs} == {5}
    assert (forced.timeout_s, forced.max_memory_mb, forced.out) == (1.5, 2048.0, "x")
    with pytest.raises(ConfigError, match=r"^--epochs must be an integer in \[1, "):
        load_experiment(cfg, overrides={"epochs": "99999999999999999999"})
    # --seeds beats the file's seeds, per-model ones included; checked as the file's are.
    cfg.write_text('models = ["popularity", { name = "random", seeds = [7] }]\nseeds = [0, 1]\n')
    reseeded = load_experiment(cfg, overrides={"seeds": "2,3"})
    assert [(s.model, s.seed) for s in reseeded.specs] == [
        ("popularity", 2),
        ("popularity", 3),
        ("random", 2),
        ("random", 3),
    ]
    with pytest.raises(ConfigError, match=r"^--seeds"):
        load_experiment(cfg, overrides={"seeds": "2,2"})
    cfg.write_text('models = ["popularity"]\nisolate = false\n')
    assert load_experiment(cfg).isolate is False


def test_dataset_rules_come_from_the_data_layer_hook(monkeypatch):
    seen = []

    def hook(name, split, min_rating, options):
        seen.append((name, split, min_rating, options))
        raise ValueError("the registry says no")

    monkeypatch.setattr(bench.datasets, "check_options", hook)
    with pytest.raises(ConfigError, match="command line: the registry says no"):
        build_experiment({"models": "popularity", "dataset": "synthetic"})
    assert seen == [("synthetic", "random", None, {})]
    with pytest.raises(ValueError, match="the registry says no"):
        bench.execution.runner.Runner().check(RunSpec(model="popularity"))
