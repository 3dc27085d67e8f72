"""Reading a TOML configuration into :class:`Config`, with one-line errors."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import Config
from .errors import ConfigError

__all__ = ["demo_text", "load_config", "parse_config"]


def demo_text() -> str:
    """The built-in demo configuration, commented, exactly as ``config example`` prints it."""
    return resources.files(__package__).joinpath("demo.toml").read_text(encoding="utf-8")


def _where(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("sim", "replay", "sacla", "karabo", "tag-modulo", "point", "list[float]", "EdgesRange"):
            continue  # discriminator/union branch names pydantic inserts into the path
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _describe(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    kind = err["type"]
    found = err.get("input")
    if kind == "extra_forbidden":
        return "unknown key (not in the schema; see `shotwatch config schema`)"
    if kind == "missing":
        return "expected a value, found none"
    if msg.startswith("expected"):
        return msg
    if kind == "union_tag_invalid":
        tags = err.get("ctx", {}).get("expected_tags", "")
        return f"expected one of {tags}, found {err['ctx'].get('tag')!r}"
    for prefix in ("Input should be ", "String should ", "Input should "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
            break
    return f"expected {msg[0].lower()}{msg[1:]}, found {found!r}"


def parse_config(data: dict[str, Any], *, origin: str) -> Config:
    """Validate a parsed TOML mapping; ``origin`` names the file in errors."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{origin}: {_where(first['loc'])}: {_describe(first)}") from None


def load_config(path: str | Path | None) -> Config:
    """Load and validate ``path``; None means the built-in demo."""
    if path is None:
        return parse_config(tomllib.loads(demo_text()), origin="<demo>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: expected a readable TOML file, found {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: expected valid TOML, found {exc}") from None
    config = parse_config(data, origin=str(p))
    api_path = getattr(config.source, "api_path", None)
    if api_path and not Path(api_path).is_absolute():
        # A relative api_path means "next to this config file", wherever it is run from.
        source = config.source.model_copy(update={"api_path": str((p.parent / api_path).resolve())})
        config = config.model_copy(update={"source": source})
    return config
