"""One thin Typer command per DVC stage. Run as `python -m stages.<name>` or `mt <name>`."""

from __future__ import annotations

import functools
import os
import sys
import warnings

# What a user's input can be wrong with: each names the file (or the params key) and the
# problem, so a traceback only hides the message (`mtlib.errors`, config_from's ValueErrors).
USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, KeyError)
DEBUG_ENV = "MTLIB_DEBUG"


def named_errors(main):
    """`main` printing `Error: <message>` and exiting 2 on a user error instead of a traceback,
    and warnings as `Warning: <message>`; with MTLIB_DEBUG=1 in the environment tracebacks and
    warnings are shown as usual."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        if os.environ.get(DEBUG_ENV, "") in ("", "0"):
            warnings.formatwarning = _short_warning
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as exc:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"Error: {message}  ({DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def _short_warning(message, category, filename, lineno, line=None) -> str:
    """`Warning: <message>`: our warnings name their file already; where in mtlib they were
    raised (and that source line) is for MTLIB_DEBUG=1."""
    return f"Warning: {message}\n"


def run(main) -> None:
    """`typer.run` of a stage's main with `named_errors`."""
    import typer

    typer.run(named_errors(main))
