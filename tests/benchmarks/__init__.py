"""Benchmarks and validations: scripts run by hand (``python tests/benchmarks/<name>.py``), never
collected by pytest (``bench_*.py``, ``validate_*.py``); each reports ratios measured side by side."""
