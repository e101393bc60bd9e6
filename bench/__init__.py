"""Benchmarks of the aecore families (not part of the installed package)."""
