"""Pure computation of drift, data-quality, performance and fairness metrics (no I/O)."""
