"""One module per command family; each exposes ``register(subparsers)``.

``register`` adds its sub-commands and sets ``func`` on each, a callable taking the parsed
arguments and returning the exit code. Heavy imports happen inside ``func`` so that
``shotwatch --help`` stays fast.
"""

from __future__ import annotations

__all__: list[str] = []
