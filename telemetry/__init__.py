"""Telemetry beyond metrics: logs parsed, mined into templates and scored for anomalies."""
