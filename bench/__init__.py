"""Benchmark of the real processes against the database's own speed (issue 10): `python -m bench`."""
