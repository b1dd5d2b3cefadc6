"""Sinks: the records cxstream emits (activations, decisions, identity changes, dead letters)."""
