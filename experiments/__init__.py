"""Experiment binaries (``train``, ``evaluate``) and their ml_collections configs."""
