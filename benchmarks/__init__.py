"""Benchmarks of the platform, kept out of the installed package: `make bench ARGS="..."`."""
