"""The error a user can fix: bad flags, a missing dataset, weights that cannot be reached."""

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input from the user; the command line prints its message as one line.

    The message names the value, what is allowed and how to fix it.
    """
