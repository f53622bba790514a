"""rsbench harness: data, sampler, registry, runner, results, report and CLI."""

__version__ = "0.1.0"
