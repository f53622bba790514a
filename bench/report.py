"""Compatibility shim: the report lives in :mod:`bench.results.report`."""

from bench.results.report import *  # noqa: F403
from bench.results.report import __all__  # noqa: F401
