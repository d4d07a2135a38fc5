"""Ignition uptime and rewards snapshot engine."""

__version__ = "0.1.0"
