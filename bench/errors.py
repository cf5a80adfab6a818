"""Errors caused by the user's input: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input (a flag, a path, a file). Its message names the culprit and fits on one line."""
