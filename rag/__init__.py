"""Explanation service: log and runbook retrieval from Qdrant, grounded LLM root-cause reports."""
