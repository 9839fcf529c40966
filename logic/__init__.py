"""Atelier's logic layer: engines, models, run folders and jobs, importable without any front end."""

__version__ = "0.1.0"
