"""``shotwatch config example | check FILE | schema``."""

from __future__ import annotations

import argparse
import json
import sys

from ..schemas import Config, demo_text, load_config

__all__ = ["register", "schema_json"]


def schema_json() -> str:
    """The JSON schema of the configuration, as ``config schema`` prints it."""
    return json.dumps(Config.model_json_schema(), indent=2, sort_keys=True) + "\n"


def _example(args: argparse.Namespace) -> int:
    sys.stdout.write(demo_text())
    return 0


def _check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    print(f"{args.file}: ok (source {cfg.source.kind}, {len(cfg.roi)} ROI(s), {len(cfg.veto)} veto(s))")
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_json())
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="print the demo config, validate a file, print the JSON schema")
    verbs = p.add_subparsers(dest="verb", required=True, parser_class=type(p))
    verbs.add_parser("example", help="the built-in demo configuration, commented").set_defaults(func=_example)
    check = verbs.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_check)
    verbs.add_parser("schema", help="the JSON schema of the configuration").set_defaults(func=_schema)
