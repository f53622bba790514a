"""The results wing: store -> tables -> figures -> render -> report / gate.

``store`` owns the results folder (shards, merged tables, manifest);
``tables`` computes every statistic (run identity, groups, summaries, paired
tests, Pareto front); ``figures`` draws them (the only matplotlib importer);
``render`` formats a document as markdown and HTML; ``report`` assembles the
sections; ``regress`` is the regression gate. Imports run one way:
store <- tables <- figures <- render <- report, and tables <- regress.
"""

from bench.results.store import RESULTS_FORMAT, ResultsError, ResultStore, load_results, now_iso

__all__ = ["RESULTS_FORMAT", "ResultStore", "ResultsError", "load_results", "now_iso"]
