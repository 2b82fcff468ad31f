"""Benchmarks of the metrics engine against evidently and fairlearn (run by hand, never in CI)."""
