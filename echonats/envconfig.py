"""Reading dataclass-declared settings from environment variables: the generic half of
``echonats.settings`` (which declares the variables). Each field's metadata carries its variable's
name, help text and checks (``minimum``, ``maximum``, ``choices``, ``min_length``, ``schemes``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from echonats.model.errors import ConfigError


def env(name: str, help_text: str, **checks: Any) -> dict[str, Any]:
    """A field's metadata: its variable, help text and checks."""
    return {"env": name, "help": help_text, **checks}


def group_from_env(cls: type, environ: Mapping[str, str]) -> object:
    """One settings group from the environment (unset or empty variables keep their defaults)."""
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        raw = environ.get(f.metadata["env"])
        if raw is None or raw == "":
            continue
        hint, _ = field_type(cls, f)
        kwargs[f.name] = parse_value(raw, hint, f.metadata)
    return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Variable:
    """One documented environment variable, as shown in `echonats config` and README."""

    name: str
    group: str
    attribute: str
    type_name: str
    default: object
    help: str


def field_type(owner: type, f: dataclasses.Field[Any]) -> tuple[type, bool]:
    hints = typing.get_type_hints(owner)
    hint = hints[f.name]
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = True
        hint = args[0]
    return hint, optional


def groups(root: type) -> Iterator[tuple[str, type]]:
    """The root dataclass's fields: (group name, group dataclass)."""
    for f in dataclasses.fields(root):
        yield f.name, typing.get_type_hints(root)[f.name]


def variables_of(root: type) -> list[Variable]:
    out: list[Variable] = []
    for group, cls in groups(root):
        for f in dataclasses.fields(cls):
            hint, optional = field_type(cls, f)
            out.append(
                Variable(
                    name=f.metadata["env"],
                    group=group,
                    attribute=f.name,
                    type_name=hint.__name__ + (" (optional)" if optional else ""),
                    default=f.default,
                    help=f.metadata["help"],
                )
            )
    return out


def parse_value(raw: str, hint: type, meta: Mapping[str, Any]) -> object:
    name = meta["env"]
    parser: Callable[[str], object]
    if hint is int:
        parser = int
    elif hint is float:
        parser = float
    elif hint is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected a boolean (true/false), got {raw!r}")
    else:
        parser = str
    try:
        value = parser(raw.strip())
    except ValueError:
        raise ConfigError(
            f"{name}: expected {'an integer' if hint is int else 'a number'}, got {raw!r}"
        ) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta.get("minimum"), meta.get("maximum")
        if low is not None and value < low:
            raise ConfigError(f"{name}: must be >= {low}, got {raw!r}")
        if high is not None and value > high:
            raise ConfigError(f"{name}: must be <= {high}, got {raw!r}")
    if isinstance(value, str):
        _check_string(name, value, meta)
    return value


def _check_string(name: str, value: str, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    min_length = meta.get("min_length")
    if min_length and len(value) < min_length:
        raise ConfigError(f"{name}: must be at least {min_length} characters long")
    schemes = meta.get("schemes")
    if schemes:
        for part in value.split(","):
            parsed = urlsplit(part.strip())
            if parsed.scheme not in schemes or not (parsed.hostname or parsed.path):
                raise ConfigError(
                    f"{name}: expected a URL with scheme {'/'.join(schemes)}, got {_redact(part.strip())!r}"
                )


def _redact(url: str) -> str:
    parsed = urlsplit(url)
    if parsed.password:
        return url.replace(parsed.password, "***")
    return url
