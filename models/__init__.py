"""Model adapters (one module per framework) and the adapter protocol in ``models.base``.

Adapters are imported lazily through ``bench.registry``; importing this package
imports no framework.
"""
