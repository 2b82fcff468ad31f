"""Sources that bring predictions in and sinks that carry incidents out, found as plugins."""
