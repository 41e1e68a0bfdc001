"""Dinosaurus: character-level language models in NumPy, as a library, a CLI and a web service."""
