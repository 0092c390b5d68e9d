"""Batch side: CloudWatch export, fleet simulation, dataset import, features, validation, training."""
