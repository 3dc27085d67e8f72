"""Reading a TOML configuration into :class:`Config`, with one-line errors."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .config import Config, SaclaSource
from .errors import ConfigError

__all__ = ["demo_text", "load_config", "parse_config"]


def demo_text() -> str:
    """The built-in demo configuration, commented, exactly as ``config example`` prints it."""
    return resources.files(__package__).joinpath("demo.toml").read_text(encoding="utf-8")


def _union_tags(tp: Any, out: set[str], seen: set[type]) -> None:
    """Collect the tags of every discriminated union reachable from the type ``tp``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        for field in tp.model_fields.values():
            disc = field.discriminator
            if isinstance(disc, str):
                for member in get_args(field.annotation):
                    _member_tags(member, disc, out)
            _union_tags(field.annotation, out, seen)
        return
    args = get_args(tp)
    if get_origin(tp) is Annotated:
        disc = next((m.discriminator for m in args[1:] if isinstance(m, FieldInfo)), None)
        if isinstance(disc, str):
            for member in get_args(args[0]):
                _member_tags(member, disc, out)
    for arg in args:
        _union_tags(arg, out, seen)


def _member_tags(member: Any, disc: str, out: set[str]) -> None:
    if isinstance(member, type) and issubclass(member, BaseModel) and disc in member.model_fields:
        out.update(str(t) for t in get_args(member.model_fields[disc].annotation))


def _branches() -> frozenset[str]:
    tags: set[str] = set()
    _union_tags(Config, tags, set())
    return frozenset(tags)


# pydantic puts a union member's tag ("sim", "tag-modulo", ...) into an error's path; every
# union of the schema counts, so a new source kind or pump-probe mode needs no edit here
_BRANCHES = _branches()
_MODELS = {"EdgesRange"}  # model names pydantic puts into the path of a union member


def _skip(item: Any) -> bool:
    """Path items that are pydantic's bookkeeping, not configuration keys."""
    return item in _BRANCHES or item in _MODELS or "[" in str(item)


def _where(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif _skip(item):
            continue  # union branches and validator names pydantic inserts into the path
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    """Keys the model at ``loc`` (the parent of an unknown key) accepts, if it can be found."""
    models: list[Any] = [Config]
    for item in loc:
        if item in _BRANCHES:  # pick the union member whose kind/mode is this branch
            models = [m for m in models if item in (getattr(m.model_fields.get(f), "default", None)
                                                    for f in ("kind", "mode"))]
            continue
        if isinstance(item, int) or _skip(item) or len(models) != 1:
            continue
        field = models[0].model_fields.get(item)
        if field is None:
            return []
        models = [a for a in getattr(field.annotation, "__args__", (field.annotation,))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
    return list(models[0].model_fields) if len(models) == 1 else []


def _describe(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    kind = err["type"]
    found = err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed(err["loc"][:-1])
        choices = f"one of {', '.join(allowed)}" if allowed else "a key of the schema (`shotwatch config schema`)"
        return f"expected {choices}, found unknown key {err['loc'][-1]!r}"
    if kind == "missing":
        return "expected a value, found none"
    if kind == "union_tag_not_found":
        return "expected one of the kinds in `shotwatch config schema`, found none"
    if msg.startswith("expected"):
        return msg
    for prefix in ("Input should be ", "String should ", "Input should "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
            break
    return f"expected {msg[0].lower()}{msg[1:]}, found {found!r}"


def _first(errors: list[Any]) -> tuple[str, str]:
    """The most telling error: a value error beats "wrong type for this union branch"."""
    specific = [e for e in errors if not str(e["type"]).endswith("_type")]
    if specific and specific[0]["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return _union_tag(specific[0])
    if specific:
        return _where(specific[0]["loc"]), _describe(specific[0])
    where = _where(errors[0]["loc"])
    same = [e for e in errors if _where(e["loc"]) == where]
    if len(same) > 1:  # a union: every branch refused the type
        wanted = " or ".join(dict.fromkeys(_describe(e).split(", found")[0].removeprefix("expected ") for e in same))
        return where, f"expected {wanted}, found {errors[0].get('input')!r}"
    return where, _describe(errors[0])


def _union_tag(err: Any) -> tuple[str, str]:
    """A discriminated union's tag is wrong: the error names its key (``source.kind``)."""
    ctx = err.get("ctx", {})
    disc = str(ctx.get("discriminator", "")).strip("'")
    where = f"{_where(err['loc'])}.{disc}"
    if err["type"] == "union_tag_not_found":
        return where, "expected a value saying which kind, found none"
    given = err.get("input")
    found = given[disc] if isinstance(given, dict) and disc in given else ctx.get("tag")
    return where, f"expected one of {ctx.get('expected_tags', '')}, found {found!r}"


def parse_config(data: dict[str, Any], *, origin: str) -> Config:
    """Validate a parsed TOML mapping; ``origin`` names the file in errors."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        where, what = _first(exc.errors())
        raise ConfigError(f"{origin}: {where}: {what}") from None


def load_config(path: str | Path | None) -> Config:
    """Load and validate ``path``; None means the built-in demo."""
    if path is None:
        return parse_config(tomllib.loads(demo_text()), origin="<demo>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: expected a readable TOML file, found {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: expected valid TOML, found {exc}") from None
    config = parse_config(data, origin=str(p))
    src = config.source
    if isinstance(src, SaclaSource) and src.api_path and not Path(src.api_path).is_absolute():
        # A relative api_path means "next to this config file", wherever it is run from.
        sacla = src.model_copy(update={"api_path": str((p.parent / src.api_path).resolve())})
        config = config.model_copy(update={"source": sacla})
    if config.source.kind == "euxfel-run" and not Path(config.source.path).is_absolute():
        # So does a run directory's path (INTERFACE.md: relative to the config file).
        source = config.source.model_copy(update={"path": str((p.parent / config.source.path).resolve())})
        config = config.model_copy(update={"source": source})
    dark = config.calibration.dark
    if isinstance(dark, str) and not Path(dark).is_absolute():
        # calibration.dark, like api_path, is relative to the config file (INTERFACE.md)
        cal = config.calibration.model_copy(update={"dark": str((p.parent / dark).resolve())})
        config = config.model_copy(update={"calibration": cal})
    return config
