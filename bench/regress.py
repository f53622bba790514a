"""Compatibility shim: the regression gate lives in :mod:`bench.results.regress`."""

from bench.results.regress import *  # noqa: F403
from bench.results.regress import __all__  # noqa: F401
