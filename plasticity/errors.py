"""The one exception type a user can cause; the CLI prints its message as one line."""


class UserError(Exception):
    """Bad input a user can fix: an unknown name, a value out of range, missing data, a bad path."""


def one_line(e: BaseException) -> str:
    """An exception raised by someone else's code (a plugin's import, its hooks) in one line:
    its type, the first line of its message and the innermost frame, never a traceback."""
    import traceback

    message = str(e).splitlines()[0] if str(e) else ""
    frames = traceback.extract_tb(e.__traceback__)
    at = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {message}{at}" if message else f"{type(e).__name__}{at}"
