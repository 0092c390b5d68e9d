"""Batch side: CloudWatch export, simulation, dataset import, features, validation, training."""
