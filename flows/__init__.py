"""Prefect flows: one model end to end."""
