"""One configuration system for every process: frozen dataclasses, read from YAML, overridden
from the environment and the command line, checked strictly, logged once.

    cfg = load(ServeConfig, "configs/serve.yaml", env_prefix="MRSE_SERVE")

Precedence, lowest first: the dataclass defaults (or a ``base`` instance), the YAML file, the
environment, explicit ``overrides`` (command-line flags). Environment variables name a field
path with ``__``: ``MRSE_SERVE__FEATURE_STORE__REDIS=redis:6379`` sets
``feature_store.redis``; values are read as YAML scalars (``3``, ``true``, ``[a, b]``), so
containers can override anything without a file. An unknown key anywhere is an error that
names it, where it was, and the keys that exist.

A config class may define ``from_raw(values) -> values`` (a classmethod) to accept a friendlier
YAML shape than its fields (``ServeConfig`` takes ``models`` as a list of {version, run}).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def secret(env: str, file: Path | None = None, environ: Mapping[str, str] | None = None):
    """A secret: from ``file`` if given, else from the file named by ``$<env>_FILE`` (the
    Docker secrets convention), else ``$<env>``; None when none is set."""
    environ = os.environ if environ is None else environ
    path = file or (Path(environ[f"{env}_FILE"]) if environ.get(f"{env}_FILE") else None)
    if path is not None:
        return path.read_text().strip() or None
    return environ.get(env) or None


def url_with_password(url: str, password: str | None, placeholder: str | None = None) -> str:
    """A SQLAlchemy ``url`` with ``password`` put in (or the literal ``placeholder``, e.g.
    ``${ENV}`` for a file another tool expands); unchanged when the URL holds a password."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.password is not None or (password is None and placeholder is None):
        return url
    if password is not None:
        return u.set(password=password).render_as_string(hide_password=False)
    marker = "MRSEPASSWORDPLACEHOLDER"
    return (
        u.set(password=marker)
        .render_as_string(hide_password=False)
        .replace(marker, placeholder or "")
    )


def model_versions(values: dict[str, Any], where: str) -> None:
    """``values["models"]`` given as a list of ``{version, run}`` (the YAML's shape) becomes a
    mapping of version -> run, in place."""
    models = values.get("models")
    if isinstance(models, list):
        if not all(isinstance(m, dict) and {"version", "run"} <= set(m) for m in models):
            raise ValueError(f"{where}.models: each entry needs `version` and `run`")
        values["models"] = {str(m["version"]): m["run"] for m in models}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the option and the source."""


SEPARATOR = "__"
SECRET_WORDS = ("password", "secret", "token", "credential")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(tp: Any, value: Any, where: str, base: Any = None) -> Any:
    if value is None:
        return None
    tp = _strip_optional(tp)
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, base if isinstance(base, tp) else None, where)
    if tp is Path:
        return Path(value)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and _is_dataclass_type(args[0]):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        return tuple(value) if isinstance(value, list | tuple) else (value,)
    if origin is dict and len(args) == 2:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, bool) and not isinstance(value, tp):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ValueError(f"{where}: expected int, got {value!r}")
    return value


def from_dict(cls: type[T], values: Mapping[str, Any], base: T | None = None, where: str = "") -> T:
    """``values`` (nested, as in YAML) over ``base`` (default: ``cls``'s own defaults)."""
    where = where or cls.__name__
    if hasattr(cls, "from_raw"):
        values = cls.from_raw(dict(values))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown {cls.__name__} option(s) {unknown}; known: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    converted = {
        key: _convert(hints[key], value, f"{where}.{key}", getattr(base, key, None))
        for key, value in values.items()
    }
    try:
        return dataclasses.replace(base, **converted) if base is not None else cls(**converted)
    except TypeError as exc:  # a required field missing
        missing = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and n not in converted
        ]
        if missing:
            raise ValueError(f"{where}: missing required option(s) {missing}") from exc
        raise ValueError(f"{where}: {exc}") from exc


def env_values(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``PREFIX__A__B=v`` -> ``{"a": {"b": v}}``, values read as YAML scalars."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    start = prefix + SEPARATOR
    for name, raw in sorted(environ.items()):
        if not name.startswith(start):
            continue
        path = [p.lower() for p in name[len(start) :].split(SEPARATOR)]
        if not all(path):
            raise ValueError(f"{name}: empty part in the variable name")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}: conflicts with another variable")
        node[path[-1]] = value
    return out


def deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, mappings merged key by key."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    with Path(path).open() as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return values


def load(
    cls: type[T],
    path: str | Path | None = None,
    env_prefix: str | None = None,
    base: T | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """The configuration of one process (see the module docstring for the precedence)."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    if env_prefix:
        values = deep_merge(values, env_values(env_prefix, environ))
    if overrides:
        values = deep_merge(values, overrides)
    try:
        return from_dict(cls, values, base)
    except ValueError as exc:
        sources = [str(path)] if path else []
        sources += [f"{env_prefix}__* variables"] if env_prefix else []
        sources += ["command-line flags"] if overrides else []
        raise ConfigError(f"{exc} (from {', '.join(sources) or 'defaults'})") from exc


def describe(config: Any) -> str:
    """One line of JSON for the log: the resolved configuration, secrets masked."""

    def clean(value: Any, key: str = "") -> Any:
        reference = key.endswith(("_file", "_env"))  # where a secret is, not the secret
        if any(w in key.lower() for w in SECRET_WORDS) and value and not reference:
            return "***"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: clean(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
            }
        if isinstance(value, Mapping):
            return {str(k): clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str) and "://" in value and "@" in value:  # a URL's password
            scheme, rest = value.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else value
        return value

    return json.dumps(clean(config), sort_keys=True)
