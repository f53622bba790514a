"""The results report on real result folders made by the runner on tiny synthetic data."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.datasets.synthetic import synthetic
from bench.execution.runner import Runner
from bench.execution.spec import RunSpec
from bench.registry import Registry
from bench.results import ResultsError, ResultStore, load_results
from bench.results.report import (
    build_report,
    cost_summary,
    curves_figure,
    pareto_front,
    scale_figure,
    write_report,
)
from models.baselines import EASE, Popularity

HAVE_IMPLICIT = importlib.util.find_spec("implicit") is not None
MAIN = ("auc", "precision@10", "recall@10", "map@10", "ndcg@10", "mrr")
ENVIRONMENT = {
    "python": "3.11.9",
    "platform": "Linux-test",
    "cpu": "Test CPU 9000",
    "cpu_count": 2,
    "usable_cpus": 2,
    "packages": {"numpy": "2.4.0", "pandas": "3.0.0", "torch": None},
    "git_commit": "abc123def456",
    "git_dirty": True,
}


def loader(name, split, min_rating, **options):
    """Every dataset is synthetic data built from the spec's options."""
    return synthetic(**options)


def make_registry() -> Registry:
    reg = Registry()
    reg.register("popularity", "models.baselines:Popularity")
    reg.register("random", "models.baselines:RandomModel")
    # ease:tiny refuses the catalogue (max_items), a real failed run.
    reg.register("ease", "models.baselines:EASE", presets={"tiny": {"max_items": 10}})
    reg.register("implicit-als", "models.implicit_model:ImplicitALS", requires=("implicit",))
    return reg


def run_folder(folder: Path, specs: list[RunSpec], registry: Registry | None = None) -> Path:
    """What ``rsbench run`` does, with the real runner and result store."""
    runner = Runner(make_registry() if registry is None else registry, loader=loader)
    store = ResultStore(folder)
    store.write_manifest(
        {
            "command": "rsbench run --config test.toml",
            "experiment": "report",
            "fit_time_factor": 3.0,
            "tolerance_floor": 0.005,
            "tolerance_se": 3.0,
            "environment": ENVIRONMENT,
            "started_at": "2025-01-01T00:00:00+0000",
        }
    )
    datasets = {}
    for spec in specs:
        result = runner.run(spec)
        store.add(result)
        if result.ok:
            datasets[spec.dataset_key()] = {
                "sha256": runner.dataset(spec).sha256,
                "source": "synthetic(...)",
            }
    store.update_manifest(datasets=datasets, finished_at="2025-01-01T00:01:00+0000")
    return folder


def spec(model, seed, preset=None, options=None, **kw) -> RunSpec:
    options = options or {"num_users": 120, "num_items": 90, "num_positives": 2_400, "seed": 3}
    return RunSpec(
        model=model,
        preset=preset,
        seed=seed,
        dataset="synthetic",
        split="random",
        min_rating=None,
        dataset_options=options,
        **kw,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    specs = [spec(m, s) for m in ("popularity", "random", "ease") for s in (0, 1)]
    if HAVE_IMPLICIT:
        specs += [spec("implicit-als", s, params={"factors": 8}, epochs=4) for s in (0, 1)]
    specs.append(spec("ease", 0, preset="tiny"))
    return run_folder(tmp_path_factory.mktemp("report") / "res", specs)


@pytest.fixture(scope="module")
def written(folder) -> list[Path]:
    return write_report(folder, n_boot=500)


@pytest.fixture(scope="module")
def markdown(written, folder) -> str:
    return (folder / "report.md").read_text()


def labels_of(folder: Path) -> list[str]:
    runs = load_results(folder)["runs"]
    return runs.loc[runs["status"] == "ok", "label"].drop_duplicates().tolist()


def table_row(markdown: str, section: str, label: str) -> list[str]:
    """Cells of ``label``'s row in the first table after the heading line ``section``."""
    text = markdown[markdown.index(section) :]
    for line in text.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split(" | ")]
    raise AssertionError(f"no row {label!r} after {section!r}")


def test_files_are_written_and_html_embeds_every_figure(folder, written):
    md, page, *figures = written
    assert md == folder / "report.md" and page == folder / "report.html"
    assert {p.name for p in figures} == {p.name for p in (folder / "figures").glob("*.png")}
    # Learning curves come from the only model with epochs here, implicit-als.
    assert any(p.name.startswith("curves-") for p in figures) == HAVE_IMPLICIT
    assert any(p.name.startswith("pareto-") for p in figures)
    assert not any(p.name.startswith("scale-") for p in figures)  # one dataset size only
    html = page.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(figures)
    assert {base64.b64decode(e) for e in embedded} == {p.read_bytes() for p in figures}
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in figures)
    text = md.read_text()
    for p in figures:
        assert f"](figures/{p.name})" in text
    assert not list(folder.glob(".*tmp")) and not list((folder / "figures").glob(".*tmp"))


def test_markdown_has_every_label_environment_and_protocol(folder, markdown):
    for label in labels_of(folder):
        assert f"| {label} |" in markdown
    for text in (
        "Test CPU 9000",
        "numpy 2.4.0",
        "abc123def456 (with uncommitted changes)",
        "Python 3.11.9",
        "Tie policy: expected",
        "Exclusion policy: train-positives",
        "min(k, number of test positives",
    ):
        assert text in markdown, text
    sha = load_results(folder)["runs"]["dataset_sha256"].dropna().iloc[0]
    assert sha in markdown
    assert "torch None" not in markdown  # uninstalled packages are not listed
    assert "Unit of resampling: the user" in markdown
    # Beyond accuracy and the breakdown by user activity, from the registry and per-user rows.
    beyond = markdown[markdown.index("#### Beyond accuracy") :]
    assert beyond.splitlines()[4].startswith("| model | popularity@10 | coverage@10 |")
    activity = markdown[markdown.index("#### By user activity") :]
    assert "auc by train positives" in activity and "users) |" in activity


def test_quality_table_means_match_the_runs_and_mark_the_best(folder, markdown):
    runs = load_results(folder)["runs"]
    ok = runs[runs["status"] == "ok"]
    labels = labels_of(folder)
    for metric_index, metric in enumerate(MAIN):
        means = ok.groupby("label")[metric].mean()
        best = means.idxmax()
        for label in labels:
            cell = table_row(markdown, "#### Quality", label)[3 + metric_index]
            # Every seed evaluates the same users, so the mean over users of
            # the seed-averaged values is the mean of the run means.
            shown = float(cell.strip("*").split(" ± ")[0])
            assert shown == pytest.approx(means[label], abs=5.1e-5)
            is_bold = cell.startswith("**") and cell.endswith("**")
            assert is_bold == np.isclose(means[label], means[best], rtol=0, atol=1e-12), (
                label,
                metric,
            )
    # A real model beats random scores on AUC, and random is near 0.5.
    assert 0.4 < ok.loc[ok["label"] == "random", "auc"].mean() < 0.6
    best_auc = table_row(markdown, "#### Quality", ok.groupby("label")["auc"].mean().idxmax())
    assert best_auc[3].startswith("**")


def test_paired_comparisons_are_holm_corrected_t_tests(folder, written):
    import scipy.stats

    from bench.results.report import user_means
    from metrics.stats import holm, holm_interval_alphas

    report = build_report(folder, n_boot=500)
    paired = report.paired
    per_user = load_results(folder)["per_user"]
    runs = load_results(folder)["runs"]
    ok = runs[runs["status"] == "ok"]
    vs_pop = paired[(paired["against"] == "reference") & (paired["metric"] == "auc")]
    others = [label for label in labels_of(folder) if label != "popularity"]
    assert vs_pop["label"].tolist() == others
    means = {
        label: user_means(per_user, ok.loc[ok["label"] == label, "run_id"].tolist(), ["auc"])
        for label in labels_of(folder)
    }
    raw = []
    for label in others:
        a, b = means[label]["auc"].to_numpy(), means["popularity"]["auc"].to_numpy()
        reference = scipy.stats.ttest_rel(a, b)
        interval = reference.confidence_interval(0.95)
        raw.append(reference.pvalue)
        row = vs_pop[vs_pop["label"] == label].iloc[0]
        assert row["mean_diff"] == pytest.approx(a.mean() - b.mean())
        assert row["t_pvalue"] == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
        assert (row["raw_low"], row["raw_high"]) == pytest.approx((interval.low, interval.high))
        # The shown interval: scipy's own, at the level Holm tested this comparison at.
        at_level = reference.confidence_interval(row["level"])
        assert (row["low"], row["high"]) == pytest.approx((at_level.low, at_level.high))
    np.testing.assert_allclose(vs_pop["t_holm"], holm(np.array(raw)))
    np.testing.assert_allclose(vs_pop["level"], 1 - holm_interval_alphas(np.array(raw)))
    assert (vs_pop["t_holm"] >= vs_pop["t_pvalue"] - 1e-15).all()
    # Random is far below popularity on AUC: significant after correction, marked *.
    random_row = vs_pop[vs_pop["label"] == "random"].iloc[0]
    assert random_row["mean_diff"] < -0.05 and random_row["significant"]
    md = report.markdown
    section = md[md.index("Against the popularity baseline") :]
    section = section[: section.index("Against the best")]
    cells = next(
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in section.splitlines()
        if line.startswith("| auc | random |")
    )
    assert cells[3] == f"{random_row['mean_diff']:+.4f}" and cells[8] == "\\*"
    assert cells[5] == f"{random_row['level']:.2%}"
    assert "| auc | popularity |" not in section  # the reference is not compared with itself
    vs_best = paired[(paired["against"] == "best") & (paired["metric"] == "auc")]
    assert len(vs_best) == len(labels_of(folder)) - 1
    assert_consistent(report)


def assert_consistent(report) -> None:
    """Every comparison: star iff Holm p < 0.05 iff its interval (at Holm's level) excludes 0."""
    paired = report.paired
    assert not paired.empty
    for r in paired.to_dict("records"):
        assert r["low"] <= r["raw_low"] <= r["mean_diff"] <= r["raw_high"] <= r["high"], r
        assert r["significant"] == (r["t_holm"] < 0.05), r
        assert r["significant"] == (r["low"] > 0 or r["high"] < 0), r
        # The plain 95% interval is the raw test's: p < 0.05 exactly when it excludes 0.
        if abs(r["t_pvalue"] - 0.05) > 1e-9:
            assert (r["t_pvalue"] < 0.05) == (r["raw_low"] > 0 or r["raw_high"] < 0), r
    # And the rendered tables say the same as the numbers.
    rows = 0
    for line in report.markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if len(cells) != 11 or not re.fullmatch(r"[+-]\d\.\d{4}", cells[3]):
            continue
        rows += 1
        low, high = (float(x) for x in cells[4].strip("\\[]").replace("\\]", "").split(", "))
        star = cells[8] == "\\*"
        holm_p = 0.0 if cells[7] == "<0.0001" else float(cells[7])
        assert star == (holm_p < 0.05 or cells[7] == "<0.0001"), line
        assert star == (low > 0 or high < 0), line
    assert rows == len(paired)


def test_cost_failures_and_notes(folder, markdown):
    runs = load_results(folder)["runs"]
    ease = runs[(runs["label"] == "ease") & (runs["status"] == "ok")]
    row = table_row(markdown, "#### Cost", "ease")
    assert row[1] == "2" and row[2] == "1"
    assert "peak RSS MiB" in markdown
    assert int(row[9].replace(",", "")) == round(ease["peak_rss_mb"].mean())
    # The sampler's set-up has its own column (and is part of fit s): EASE builds none.
    assert "sampler set-up s" in markdown and row[6] == "<0.01"
    assert "median fit s" in markdown and "fit s std" in markdown
    # One number format per column: every fit-time cell has two decimals (or "<0.01").
    section = markdown[markdown.index("#### Cost") :]
    section = section[: section.index("####", 5)]
    fits = [line.split(" | ")[3] for line in section.splitlines() if line.startswith("| ")][2:]
    assert fits and all(re.fullmatch(r"<0\.01|[\d,]+\.\d\d", f) for f in fits), fits
    # A catalogue too large for EASE is "not applicable" (with the reason), not a failure.
    inapplicable = markdown[markdown.index("## Not applicable") : markdown.index("## Failed runs")]
    assert "| ease:tiny | 0 |" in inapplicable and "exceeds max\\_items=10" in inapplicable
    assert "| ease:tiny |" not in markdown[: markdown.index("## Not applicable")]
    assert "| ease:tiny |" not in markdown[markdown.index("## Failed runs") :]
    models = markdown[markdown.index("## Models") : markdown.index("## Results by dataset")]
    for label in labels_of(folder):  # every model gets a row with its declared facts
        assert f"| {label} |" in models
    assert "| popularity | no | yes |" in models and "| random | no | no |" in models
    if HAVE_IMPLICIT:
        assert "| implicit-als | no | no | implicit iALS" in models


def test_report_is_reproducible_and_leaves_the_results_alone(folder, written):
    tables = ("runs.csv", "per_user.parquet", "curves.csv", "manifest.json")
    before = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in tables}
    first = (folder / "report.md").read_text()
    write_report(folder, n_boot=500)
    assert (folder / "report.md").read_text() == first
    after = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in tables}
    assert before == after


def test_figures_are_labelled(folder):
    loaded = load_results(folder)
    fig = curves_figure(loaded["curves"], "auc")
    if not HAVE_IMPLICIT:  # no model with epochs: nothing to draw
        assert fig is None
        return
    axes = fig.axes
    assert len(axes) == 2  # one family (implicit), by epoch and by fit time
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel()
    assert [ax.get_xscale() for ax in axes] == ["linear", "log"]
    assert "(s, log scale" in axes[1].get_xlabel()
    # Models without epochs are labelled horizontal reference lines, not series.
    series = {
        line.get_label() for line in axes[0].get_lines() if not line.get_label().startswith("_")
    }
    assert series == {"implicit-als"}
    texts = {t.get_text() for t in axes[0].texts}
    low, high = axes[0].get_ylim()
    runs = loaded["runs"][loaded["runs"]["status"] == "ok"]
    for label in ("popularity", "ease", "random"):
        value = runs.loc[runs["label"] == label, "auc"].mean()
        assert (label in texts) == (low <= value <= high), label
    als = loaded["curves"][loaded["curves"]["label"] == "implicit-als"]
    assert sorted(als["epoch"].unique()) == [1, 2, 3, 4]


def test_styles_differ_in_colour_marker_and_line_style():
    from bench.results.figures import styles

    labels = [f"m{i}" for i in range(24)]
    st = styles(labels)
    keys = {(str(s["color"]), s["marker"], s["linestyle"]) for s in st.values()}
    assert len(keys) == len(labels)
    for i in range(14):  # labels one colour cycle apart differ in marker and line style
        assert st[f"m{i}"]["marker"] != st[f"m{i + 10}"]["marker"]
        assert st[f"m{i}"]["linestyle"] != st[f"m{i + 10}"]["linestyle"]


def test_cost_summary_mean_std_and_median_by_hand():
    import pandas as pd

    runs = pd.DataFrame(
        {
            "label": ["a", "a", "a", "b"],
            "seed": [0, 1, 2, 0],
            "epochs": [10, 10, 10, 1],
            # One noisy seed: the mean moves, the median does not.
            "fit_seconds": [2.0, 2.2, 3.6, 0.5],
            "seconds_per_epoch": [0.2, 0.22, 0.36, 0.5],
            "eval_seconds": [0.1, 0.1, 0.1, 0.2],
            "peak_rss_mb": [900.0, 910.0, 920.0, 500.0],
            "rss_growth_mb": [100.0, 110.0, 120.0, 10.0],
        }
    )
    cost = cost_summary(runs)
    assert cost.loc["a", "seeds"] == 3 and cost.loc["b", "seeds"] == 1
    assert cost.loc["a", "fit_seconds"] == pytest.approx(7.8 / 3)
    assert cost.loc["a", "fit_seconds_median"] == pytest.approx(2.2)
    assert cost.loc["a", "fit_seconds_std"] == pytest.approx(np.std([2.0, 2.2, 3.6], ddof=1))
    assert cost.loc["b", "fit_seconds_median"] == 0.5 and np.isnan(cost.loc["b", "fit_seconds_std"])
    assert cost.loc["a", "peak_rss_mb"] == pytest.approx(910.0)


def test_pareto_front_by_hand():
    cost = [1.0, 2.0, 3.0, 0.5, 2.0, 10.0]
    quality = [0.80, 0.85, 0.84, 0.60, 0.85, 0.90]
    # 2 is dominated by 1 (faster and better); 1 and 4 tie exactly and both stay.
    assert pareto_front(cost, quality).tolist() == [True, True, False, True, True, True]
    assert pareto_front([1.0], [0.5]).tolist() == [True]
    with pytest.raises(ValueError, match="1-d of one length"):
        pareto_front([1.0, 2.0], [0.5])


def test_scale_suite_gets_log_axis_size_plots(tmp_path):
    sizes = [(40, 50, 800), (80, 50, 1_600), (160, 50, 3_200)]
    specs = [
        spec(m, 0, options={"num_users": u, "num_items": i, "num_positives": p, "seed": 1})
        for u, i, p in sizes
        for m in ("popularity", "ease")
    ]
    folder = run_folder(tmp_path / "scale", specs)
    paths = write_report(folder, n_boot=200)
    scale = [p for p in paths if p.name.startswith("scale-")]
    assert len(scale) == 1
    md = (folder / "report.md").read_text()
    assert "## Scaling with dataset size" in md and f"]({'figures'}/{scale[0].name})" in md
    runs = load_results(folder)["runs"]
    train = sorted(runs["train_positives"].unique())
    assert len(train) == 3
    for p in train:
        assert f"{p:,} positives" in md
    assert md.count("### ") >= 3 + 1  # one section per size plus the scale suite
    row = table_row(md, "## Scaling with dataset size", "ease")
    # Sizes, then the fit, set-up, evaluation and memory exponents.
    assert len(row) == 1 + len(sizes) + 4
    fit_exponent = float(row[1 + len(sizes)])
    ease = runs[runs["label"] == "ease"].groupby("train_positives")["fit_seconds"].mean()
    slope = np.polyfit(np.log(ease.index.to_numpy(float)), np.log(ease.to_numpy(float)), 1)[0]
    assert fit_exponent == pytest.approx(slope, abs=0.006)
    assert row[2 + len(sizes)] == "-"  # EASE builds no sampler: no set-up exponent
    assert re.fullmatch(r"-?\d+\.\d\d", row[3 + len(sizes)])
    # Above 1.1 a model needs a reason in its algorithm, else the report calls it a defect.
    if fit_exponent > 1.1:
        assert "ease (" in md and "O(num_items^3)" in md
    else:
        assert "grows at most as train positives^1.1" in md or "a defect" in md

    from bench.results import tables as result_tables

    assert result_tables.scaling_exponent([10, 100, 1000], [3, 30, 300]) == pytest.approx(1.0)
    assert result_tables.scaling_exponent([10, 100], [1, 100]) == pytest.approx(2.0)
    assert np.isnan(result_tables.scaling_exponent([10, 10], [1, 2]))  # one distinct size
    assert result_tables.scaling_exponent([10, 100, 1000], [0, 1, 10]) == pytest.approx(1.0)

    table = runs.groupby(["label", "train_positives"], as_index=False)[
        ["fit_seconds", "sampler_setup_seconds", "eval_seconds", "peak_rss_mb"]
    ].mean()
    from bench.results.report import SCALE_COLUMNS, _scaling_exponents

    exponents = _scaling_exponents(table)
    fig = scale_figure(table, SCALE_COLUMNS, title="synthetic", exponents=exponents)
    assert len(fig.axes) == 4
    keys = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"ease ({exponents.loc['ease', 'fit_seconds']:.2f})" in keys
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "train positives" in ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert "(s, log scale)" in fig.axes[0].get_ylabel()
    assert "(MiB, log scale)" in fig.axes[3].get_ylabel()


def test_cli_report_and_bad_folder(folder, tmp_path, capsys):
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out.split()
    assert str(folder / "report.md") in out and str(folder / "report.html") in out
    with pytest.raises(ResultsError, match=r"no runs\.csv"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2


BASELINES = Path(__file__).resolve().parents[1] / "results" / "baseline"


@pytest.mark.parametrize("name", ["notebook", "quick"])
def test_committed_baselines_report_consistent_statistics(name, tmp_path):
    """The committed folders, read as they are: every comparison of the report agrees."""
    folder = tmp_path / name
    shutil.copytree(BASELINES / name, folder)
    report = build_report(folder, n_boot=200)
    assert_consistent(report)
    runs = load_results(folder)["runs"]
    assert set(report.quality["label"]) == set(runs.loc[runs["status"] == "ok", "label"])
    # Written before runs.csv recorded the reference fact: popularity is the reference.
    assert "reference" not in runs
    vs_reference = report.paired[report.paired["against"] == "reference"]
    assert set(vs_reference["reference"]) == {"popularity"}
    assert "Against the popularity baseline:" in report.markdown


class Anchor(EASE):
    """A reference baseline that is not named popularity."""

    reference = True


class NotTheReference(Popularity):
    """Named popularity below, but its class says it is not the reference."""

    reference = False


def test_the_reference_is_the_class_fact_the_runner_records(tmp_path):
    reg = Registry()
    reg.register_class(Anchor, "anchor")
    reg.register_class(NotTheReference, "popularity")
    reg.register("random", "models.baselines:RandomModel")
    specs = [spec("popularity", 0), spec("anchor", 0), spec("random", 0), spec("random", 1)]
    folder = run_folder(tmp_path / "res", specs, reg)
    runs = load_results(folder)["runs"].set_index("label")
    assert runs["reference"].astype(str).to_dict() == {
        "popularity": "False",
        "anchor": "True",
        "random": "False",
    }
    report = build_report(folder, n_boot=200)
    vs_reference = report.paired[report.paired["against"] == "reference"]
    assert set(vs_reference["reference"]) == {"anchor"}
    assert set(vs_reference["label"]) == {"popularity", "random"}
    assert "Against the anchor baseline:" in report.markdown
    assert "Against the popularity baseline" not in report.markdown


def test_names_and_parameters_with_markdown_and_html_are_escaped(folder, tmp_path):
    hostile = "<img src=x onerror=alert(1)>|**bold**_[link](http://x)"
    copy = tmp_path / "hostile"
    shutil.copytree(folder, copy)
    # notes as text: without implicit-als every note is empty, which pandas reads as floats.
    runs = pd.read_csv(copy / "runs.csv", dtype={"run_id": str, "label": str, "notes": str})
    runs.loc[runs["label"] == "random", "label"] = hostile
    runs.loc[runs["model"] == "random", "notes"] = "<script>alert(2)</script>"
    runs.to_csv(copy / "runs.csv", index=False)
    write_report(copy, n_boot=100)
    md = (copy / "report.md").read_text()
    page = (copy / "report.html").read_text()
    assert "<img" not in md and "<script>" not in md and "**bold**" not in md
    assert "&lt;img src=x onerror=alert(1)>\\|\\*\\*bold\\*\\*\\_\\[link\\](http://x)" in md
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;|**bold**" in page
    # The quality row of the renamed model has as many cells as its header (| is escaped).
    section = md[md.index("#### Quality") :].splitlines()
    header = next(line for line in section if line.startswith("| model |"))
    row = next(line for line in section if line.startswith("| &lt;img"))
    cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    assert len(cells) == header.strip().strip("|").count("|") + 1


def test_not_applicable_runs_are_listed_apart_from_failures():
    import pandas as pd

    from bench.results.render import Doc, render_markdown
    from bench.results.report import _failed_section

    runs = pd.DataFrame(
        {
            "label": ["ease", "fm"],
            "seed": [0, 0],
            "run_id": ["1", "2"],
            "dataset": ["ml-1m", "ml-1m"],
            "split": ["cold-users", "cold-users"],
            "status": ["not-applicable", "failed"],
            "error": ["cannot score cold users", "boom"],
        }
    )
    doc = Doc()
    _failed_section(doc, runs)
    text = render_markdown(doc)
    head, failed = text.split("## Failed runs")
    assert "## Not applicable" in head and "cannot score cold users" in head
    assert "boom" in failed and "cannot score cold users" not in failed


def test_a_report_without_timing_grade_runs_has_no_pareto_front(tmp_path):
    """Runs that all shared their machine (parallel jobs): no comparable fit times, no crash."""
    folder = tmp_path / "shared"
    baseline = Path(__file__).resolve().parents[1] / "results" / "baseline" / "quick"
    shutil.copytree(baseline, folder, ignore=shutil.ignore_patterns("figures", "report.*"))
    runs = pd.read_csv(folder / "runs.csv", dtype={"run_id": str})
    runs["timing_grade"] = False
    runs.to_csv(folder / "runs.csv", index=False)
    report = build_report(folder, n_boot=50)
    assert "No timing-grade run" in report.markdown
    assert not any(name.startswith("pareto-") for name in report.figures)
    assert any(name.startswith("curves-") for name in report.figures)  # the rest is drawn
