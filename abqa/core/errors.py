"""The one error type the CLI turns into a clear message and exit code 2."""

from __future__ import annotations


class AbqaError(Exception):
    """A user-facing error: bad input, missing file, unknown arm, unreachable server.

    The message must name what is wrong (file, field, id, arm) and, where there is one, the fix.
    The CLI prints it without a traceback and exits with `exit_code`.
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
