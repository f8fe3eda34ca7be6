"""Errors a user can fix.

A :class:`UserError` is bad input: the CLI prints its message on one line and
exits with code 2, and nothing is charged to the ledger. Any other exception is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input. The message names the field and the fix, on one line.

    A subclass with ``multiline = True`` (the PII gate's refusal) keeps its line breaks: one line, then one
    line per item the user must fix.
    """

    exit_code = 2
    multiline = False


class BudgetExceeded(UserError):
    """A planned run does not fit the dataset's remaining privacy budget."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
