"""Shared runtime helpers: configuration, atomic files, seeding, distributed setup, logging, checkpoints.

One focused module per concern; import what you need (``from runtime.config import load_config``).
"""
