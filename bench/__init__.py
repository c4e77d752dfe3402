"""Benchmarks and fault scenarios of the hub (commands, not tests; see docs/performance.md)."""
