"""Benchmarks, run with `make bench`; each prints its figure against a baseline measured
in the same run."""
