"""The one exception type a user can cause; the CLI prints its message as one line."""


class UserError(Exception):
    """Bad input a user can fix: an unknown name, a value out of range, missing data, a bad path."""
