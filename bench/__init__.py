"""Benchmarks (never tests): `make bench`."""
