"""Harnesses: each runs one kind of measurement from a ``RunConfig`` and writes one record."""
