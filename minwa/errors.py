"""User-facing errors: one clear sentence, a non-zero exit, never a traceback.

Raise :class:`MinwaError` for anything a user can cause (a missing path, a corrupt file, a wrong option);
the CLI prints ``error: <message>`` and exits with ``exit_code``. Programming errors stay ordinary
exceptions so that they do show a traceback.
"""


class MinwaError(Exception):
    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def check_rules(rules) -> None:
    """Raise the message of the first ``(ok, message)`` pair that is not ok (config checks read as a table)."""
    for ok, message in rules:
        if not ok:
            raise MinwaError(message)


def require_path(path, what: str = "path"):
    """Return ``Path(path)`` or raise a one-line error when it does not exist."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.exists():
        raise MinwaError(f"{what} not found: {p}")
    return p
