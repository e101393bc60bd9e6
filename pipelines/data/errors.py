"""Errors raised for bad input; each names the file (and row where known)."""


class DataError(ValueError):
    """Input data that cannot be used, with the file (and row) that caused it in the message."""
