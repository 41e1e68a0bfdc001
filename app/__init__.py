"""Dinosaurus: character-level language models in NumPy, as a library, a CLI and a web service."""

__version__ = "0.1.0"
