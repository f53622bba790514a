"""Bootstrap intervals, paired tests and the Holm correction."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from metrics import CI, PairedComparison, holm, mean_ci, paired_comparison
from metrics.stats import holm_interval_alphas


class TestMeanCI:
    def test_contains_the_mean_and_narrows_with_n(self, rng):
        widths = []
        for n in (50, 500, 5000):
            values = rng.normal(0.7, 0.2, size=n)
            ci = mean_ci(values, rng=1)
            assert isinstance(ci, CI)
            assert ci.mean == pytest.approx(values.mean())
            assert ci.low < ci.mean < ci.high
            widths.append(ci.high - ci.low)
        assert widths[0] > widths[1] > widths[2]
        # about 2 * 1.96 * sigma / sqrt(n)
        assert widths[2] == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(5000), rel=0.15)

    def test_level_changes_the_width(self, rng):
        values = rng.random(300)
        narrow = mean_ci(values, 0.5, rng=3)
        wide = mean_ci(values, 0.99, rng=3)
        assert wide.low < narrow.low < narrow.high < wide.high

    def test_seeded_reproducibility(self, rng):
        values = rng.random(200)
        assert mean_ci(values, rng=7) == mean_ci(values, rng=7)
        assert mean_ci(values, rng=np.random.default_rng(7)) == mean_ci(values, rng=7)
        assert mean_ci(values, rng=7) != mean_ci(values, rng=8)

    def test_matches_a_loop_bootstrap(self, rng):
        values = rng.exponential(size=40)
        ci = mean_ci(values, 0.9, n_boot=500, rng=11)
        gen = np.random.default_rng(11)
        idx = gen.integers(0, values.size, size=(500, values.size))
        means = [values[row].mean() for row in idx]
        low, high = np.quantile(means, [0.05, 0.95])
        assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)

    def test_chunked_bootstrap_is_the_same_stream(self, rng, monkeypatch):
        import metrics.stats as stats

        values = rng.random(100)
        whole = mean_ci(values, rng=5, n_boot=300)
        monkeypatch.setattr(stats, "_BOOT_CHUNK", 250)  # 2 resamples per chunk
        assert mean_ci(values, rng=5, n_boot=300) == whole

    def test_constant_and_single_values(self):
        assert mean_ci([0.25, 0.25, 0.25], rng=0) == CI(0.25, 0.25, 0.25)
        assert mean_ci([3.0], rng=0) == CI(3.0, 3.0, 3.0)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"values": []}, "empty"),
            ({"values": [1.0, np.nan]}, "non-finite"),
            ({"values": [[1.0, 2.0]]}, "1-D"),
            ({"values": [1.0, 2.0], "level": 1.0}, "level"),
            ({"values": [1.0, 2.0], "level": 0}, "level"),
            ({"values": [1.0, 2.0], "n_boot": 0}, "n_boot"),
        ],
    )
    def test_bad_inputs(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            mean_ci(rng=0, **kwargs)

    def test_rng_is_required_and_checked(self):
        with pytest.raises(TypeError):
            mean_ci([1.0, 2.0])
        with pytest.raises(TypeError, match="rng"):
            mean_ci([1.0, 2.0], rng="seed")


class TestPairedComparison:
    def test_identical_systems(self, rng):
        a = rng.random(100)
        result = paired_comparison(a, a.copy(), rng=0)
        assert isinstance(result, PairedComparison)
        assert result == PairedComparison(0.0, 0.0, 0.0, 1.0, 1.0, 100)

    def test_clear_shift_is_detected(self, rng):
        a = rng.random(200)
        b = a - 0.05 + rng.normal(0, 0.02, size=200)
        result = paired_comparison(a, b, rng=0)
        assert result.mean_diff == pytest.approx(np.mean(a - b))
        assert 0 < result.low < result.mean_diff < result.high
        assert result.t_pvalue < 1e-10 and result.wilcoxon_pvalue < 1e-10
        assert result.t_pvalue == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
        assert result.wilcoxon_pvalue == pytest.approx(scipy.stats.wilcoxon(a - b).pvalue)
        assert result.n == 200

    def test_no_shift_is_not_significant(self, rng):
        a = rng.random(300)
        b = a + rng.normal(0, 0.05, size=300)
        result = paired_comparison(a, b, rng=0)
        assert result.low < 0 < result.high
        assert result.t_pvalue > 0.01 and result.wilcoxon_pvalue > 0.01

    def test_constant_nonzero_difference(self):
        result = paired_comparison([1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5], rng=0)
        assert result.mean_diff == 0.5 and result.low == result.high == 0.5
        assert result.t_pvalue == 0.0

    def test_seeded(self, rng):
        a, b = rng.random(50), rng.random(50)
        assert paired_comparison(a, b, rng=3) == paired_comparison(a, b, rng=3)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="same length"):
            paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0], rng=0)
        with pytest.raises(ValueError, match="at least 2"):
            paired_comparison([1.0], [2.0], rng=0)
        with pytest.raises(ValueError, match="non-finite"):
            paired_comparison([1.0, np.inf], [2.0, 1.0], rng=0)


class TestHolm:
    def test_hand_computed(self):
        # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
        adjusted = holm([0.01, 0.04, 0.03, 0.005])
        np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])

    def test_capped_and_monotone(self, rng):
        p = rng.random(20) ** 3
        adjusted = holm(p)
        assert np.all(adjusted <= 1.0) and np.all(adjusted >= p)
        order = np.argsort(p)
        assert np.all(np.diff(adjusted[order]) >= 0)
        np.testing.assert_array_equal(holm([0.5, 0.9]), [1.0, 1.0])

    def test_edge_cases(self):
        assert holm([]).shape == (0,)
        np.testing.assert_array_equal(holm([0.2]), [0.2])
        np.testing.assert_array_equal(holm([0.01, 0.01]), [0.02, 0.02])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm([0.1, 1.5])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            holm([np.nan])


class TestHolmIntervalAlphas:
    def test_by_hand(self):
        # Sorted: 0.001, 0.01, 0.04, 0.5; Holm adjusted 0.004, 0.03, 0.08, 0.5: R = 2 of 4.
        # Rejected 1st and 2nd: 0.05/4, 0.05/3; the two kept: 0.05/(4 - 2).
        alphas = holm_interval_alphas([0.04, 0.001, 0.5, 0.01])
        np.testing.assert_allclose(alphas, [0.025, 0.0125, 0.025, 0.05 / 3])

    def test_levels_agree_with_holm_rejections(self, rng):
        for _ in range(200):
            p = rng.uniform(0, 0.08, size=int(rng.integers(1, 12))) ** rng.uniform(0.5, 2)
            alphas = holm_interval_alphas(p, 0.05)
            # Rejected by Holm exactly when the p-value is below its own level.
            np.testing.assert_array_equal(holm(p) < 0.05, p < alphas)
            assert (alphas <= 0.05).all()

    def test_ties_nothing_and_everything_rejected(self):
        np.testing.assert_allclose(holm_interval_alphas([0.01, 0.01]), [0.025, 0.025])
        np.testing.assert_allclose(holm_interval_alphas([0.3, 0.9]), [0.025, 0.025])
        np.testing.assert_allclose(
            holm_interval_alphas([0.001, 0.002, 0.003]), [1 / 60, 0.025, 0.05]
        )
        assert holm_interval_alphas([]).shape == (0,)
        with pytest.raises(ValueError, match="alpha"):
            holm_interval_alphas([0.1], alpha=1.5)
