"""Instances and units: the state table, supervisor, reaper, manager, helpers."""
