"""Benchmarks that print a ratio against a baseline measured in the same run; run each as
``python -m bench.<name>`` from the repository root."""
