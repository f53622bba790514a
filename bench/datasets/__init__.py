"""The datasets wing: registry, source chain, parsers by format, splits and the Dataset bundle.

Everything else reads data through this package's public names; nothing outside
it knows a dataset's name. Layout:

* :mod:`.catalog`: the datasets rsbench ships and :func:`load_dataset`;
* :mod:`.registry`: :class:`DatasetEntry`, :class:`DatasetRegistry`, plugins
  (entry-point group ``rsbench.datasets``);
* :mod:`.chain` (local path, cache, mirrors) over :mod:`.sources` (capped,
  streamed, hashed reads) and :mod:`bench.io` (atomic writes);
* :mod:`.formats`: one parser module per file format, each returning a :class:`Record`;
* :mod:`.record`: the pre-split record and :func:`split_record`;
* :mod:`.splits`: pure mask functions and the split catalogue;
* :mod:`.features`, :mod:`.synthetic`, :mod:`.dataset` (the :class:`Dataset` bundle).
"""

from bench.datasets.catalog import (
    DEFAULT_DATASET,
    REGISTRY,
    check_options,
    dataset_defaults,
    default_registry,
    is_generated,
    load_dataset,
)
from bench.datasets.dataset import DataError, Dataset, NotApplicableError, SideFeatures
from bench.datasets.record import Record, split_record
from bench.datasets.registry import (
    ENTRY_POINT_GROUP,
    SPLIT_OPTIONS,
    DatasetEntry,
    DatasetRegistry,
    LoadRequest,
)
from bench.datasets.splits import SPLITS, SplitRule, split_mask

__all__ = [
    "DEFAULT_DATASET",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "SPLITS",
    "SPLIT_OPTIONS",
    "DataError",
    "Dataset",
    "DatasetEntry",
    "DatasetRegistry",
    "LoadRequest",
    "NotApplicableError",
    "Record",
    "SideFeatures",
    "SplitRule",
    "check_options",
    "dataset_defaults",
    "default_registry",
    "is_generated",
    "load_dataset",
    "split_mask",
    "split_record",
]
