"""One thin Typer command per DVC stage. Run as `python -m stages.<name>` or `mt <name>`."""

from __future__ import annotations

import functools
import os
import sys

# What a user's input can be wrong with: each names the file (or the params key) and the
# problem, so a traceback only hides the message (`mtlib.errors`, config_from's ValueErrors).
USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, KeyError)
DEBUG_ENV = "MTLIB_DEBUG"


def named_errors(main):
    """`main` printing `Error: <message>` and exiting 2 on a user error instead of a traceback;
    with MTLIB_DEBUG=1 in the environment the traceback is shown as usual."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as exc:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"Error: {message}  ({DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def run(main) -> None:
    """`typer.run` of a stage's main with `named_errors`."""
    import typer

    typer.run(named_errors(main))
