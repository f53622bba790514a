"""Test helper: split normalised MovieLens tables the way the ml-100k loader does."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.datasets import Dataset, split_record
from bench.datasets.formats.movielens import MovieLensTables, record_from_tables


def dataset_from_tables(
    tables: MovieLensTables,
    split: str = "ua",
    min_rating: float | None = 4.0,
    *,
    name: str = "ml-100k",
    source: str = "",
    stage: str = "test",
    **options: Any,
) -> Dataset:
    """``tables`` as the ml-100k loader would split them (its record, then :func:`split_record`)."""
    record = replace(record_from_tables(tables), source=source)
    return split_record(record, split, min_rating, name=name, stage=stage, options=options)
