"""Compatibility namespace: ``multiagents.core.exceptions`` as the seed imports it."""
