"""The ``shotwatch`` command line: parsing, dispatch, and the exit-code contract.

Exit codes: 0 done, 2 bad usage/configuration/input (one line on stderr, no traceback),
1 failure at run time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .schemas.errors import ShotwatchRuntimeError, UsageError

__all__ = ["main"]

# Command families, each a module in shotwatch.commands with register(subparsers).
_FAMILIES = ("config_cmd", "record_cmd", "dark_cmd", "reduce_cmd", "report_cmd", "info_cmd", "list_cmd", "live_cmd")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage + message and exits 2; we keep the one-line contract.
        sys.stderr.write(f"shotwatch: error: {self.prog}: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shotwatch", description="Online analysis and recording for XFEL experiments.")
    parser.add_argument("--version", action="version", version=f"shotwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for family in _FAMILIES:
        try:
            module = importlib.import_module(f"{__package__}.commands.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.commands.{family}":
                raise
            continue  # family not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        sys.stderr.write(f"shotwatch: error: {exc}\n")
        return 2
    except ShotwatchRuntimeError as exc:
        sys.stderr.write(f"shotwatch: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
