"""The ``minwa`` command: a thin dispatcher over ``minwa.commands.<name>``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and calls one plain Python function of the stage packages. User errors (:class:`MinwaError`) print one
line and exit non-zero; Ctrl-C exits 130 without a traceback. An ``OSError`` that escapes a command
(a full disk or a vanished folder where no writer translated it) is, as a last line of defence, one
sentence naming the path and the reason, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from minwa.errors import MinwaError
from minwa.utils.oserrors import os_error

# command name -> module under minwa.commands
COMMANDS = {
    "pack": "pack",
    "verify": "verify",
    "train": "train",
    "eval": "eval",
    "predict": "predict",
    "export": "export",
    "serve": "serve",
    "demo": "demo",
    "augment-preview": "augment_preview",
    "bench": "bench",
    "models": "models",
    "make-dataset": "make_dataset",
    "plan": "plan",
    "import-weights": "import_weights",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other minwa error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from minwa import __version__

    parser = _Parser(prog="minwa", description="Deep Image on PyTorch: pack, train, evaluate, predict, scale out.")
    parser.add_argument("--version", action="version", version=f"minwa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"minwa.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
    except MinwaError as e:
        print(f"error: {e}", file=sys.stderr)
        code = e.exit_code
    except OSError as e:
        err = os_error(e, doing="use")
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    if _under_torchrun():
        from minwa.parallel import shutdown

        shutdown(exit_code=code)  # leave the group, then os._exit: avoids gloo's abort at exit
    return code


def _under_torchrun() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "torch.distributed" in sys.modules


if __name__ == "__main__":
    raise SystemExit(main())
