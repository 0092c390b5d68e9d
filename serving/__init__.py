"""Serving side: Triton model repository from MLflow aliases, A/B router, online scorer."""
