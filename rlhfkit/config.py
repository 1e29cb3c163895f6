"""Configs: one dataclass per trainer, loaded from YAML plus ``key=value`` overrides::

    @dataclass
    class PPOConfig:
        renamed_keys: ClassVar[dict[str, str]] = {"temperature": "sampling.temperature"}  # old -> new
        lr: float = option(1e-5, "AdamW learning rate")  # every field carries its help text
        sampling: SamplingConfig = option(SamplingConfig, "how to sample")  # a section

    cfg = load_config(PPOConfig, "configs/ppo.yaml", overrides=["sampling.temperature=0.7"])

Unknown keys (with a "did you mean" hint), renamed keys (naming the new key), values of the wrong type
or outside a ``Literal`` and ``ValueError``s from ``__post_init__`` raise a :class:`ConfigError` that
names the file or override and the dotted key. pydantic validates, through a ``TypedDict`` mirror of
each dataclass's init fields whose types follow these rules.

Coercion rules (strict; nothing is silently lossy):
  * ``bool``: only ``true``/``false``.
  * ``int``: ints, integral floats (``1000.0``) and numeric strings (``"1e6"``, which PyYAML
    leaves as a string); never a bool, never ``1.5``.
  * ``float``: ints, floats and numeric strings (``"1e-5"``); never a bool.
  * ``str``: strings only (quote ``"001"`` in YAML; on the command line a ``str`` field takes
    the raw text, so ``run_name=001`` gives ``"001"``).
  * ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``Literal[...]``, ``Path``,
    nested dataclasses (a mapping, or ``null``/empty for "all defaults" of the field).

This module must not import torch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import functools
import os
import pathlib
import tempfile
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union

import pydantic
import yaml
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, Required, TypedDict

__all__ = ["ConfigError", "option", "load_config", "config_to_dict", "save_config", "describe_config"]

T = TypeVar("T")
_MISSING = dataclasses.MISSING
_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """A config file, override or value that cannot be turned into the config dataclass."""


def option(default: Any = _MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text. A mutable ``default`` (list, dict, a dataclass instance) is
    deep-copied per config, a dataclass *type* builds its defaults; no default (nor ``default_factory``)
    makes the field required. Other keyword arguments go to :func:`dataclasses.field`."""
    metadata = {**(kw.pop("metadata", None) or {}), "help": help}
    if default is not _MISSING and "default_factory" in kw:
        raise TypeError("option(): give either default or default_factory, not both")
    if _is_dataclass_type(default):
        kw["default_factory"] = default
    elif type(default).__hash__ is None:  # unhashable == mutable: dataclasses refuse it as default
        kw["default_factory"] = functools.partial(copy.deepcopy, default)
    elif default is not _MISSING:
        kw["default"] = default
    return dataclasses.field(metadata=metadata, **kw)


# --- Loading: layer base < file < overrides into one nested dict, then validate it with pydantic ---
def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: dict | None = None,
) -> T:
    """Build ``cls`` from ``base``, then the YAML file at ``path``, then ``dotted.key=value`` overrides
    (read with ``yaml.safe_load``; empty is null), merged section by section. Raises :class:`ConfigError`."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"load_config() needs a dataclass type, got {cls!r}")
    source = os.fspath(path) if path is not None else "config"
    data: dict[str, Any] = _to_plain(copy.deepcopy(base)) if base is not None else {}  # instances: dicts
    if not isinstance(data, dict):
        raise TypeError(f"load_config(base=...) must be a dict, got {type(base).__name__}")
    if path is not None:
        try:
            with open(source, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {source}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from e
        if not isinstance(loaded, (dict, type(None))):
            kind = type(loaded).__name__
            raise ConfigError(f"{source}: the top level must be a mapping of keys, got {kind}")
        data = _merge(data, loaded or {})

    origins: dict[str, str] = {}  # dotted key -> the override that set it
    for item in overrides:
        origins[_override(cls, data, item)] = f"override {item!r}"

    def where(key: str) -> str:  # the override that set ``key`` or a section above it, else the file
        while key and key not in origins:
            key = key[: max(key.rfind("."), key.rfind("["), 0)]  # "ppo.stop[1]" -> "ppo.stop" -> "ppo"
        return origins.get(key, source)

    try:
        return _adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        # report the shallowest error, and a section's unknown keys before its bad values
        errors = e.errors(include_url=False)
        first = min(errors, key=lambda x: (len(x["loc"]), x["type"] != "extra_forbidden"))
        error = _config_error(cls, first, where)
    raise error from error.__cause__  # outside the except: no pydantic traceback attached


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _override(cls: type, data: dict[str, Any], item: str) -> str:
    """Set ``dotted.key=value`` in ``data`` and return the key; a str field takes the text as typed."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"malformed override {item!r}: expected key=value (e.g. ppo.lr=3e-6)")
    key, raw = item.split("=", 1)
    parts, where = key.strip().split("."), f"override {item!r}"
    if "" in parts:
        raise ConfigError(f"malformed override {item!r}: empty key")
    field_type = _locate(cls, parts, where)[2]
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if _strip_optional(field_type) is str and value is not None and not isinstance(value, str):
        value = raw  # run_name=001 is "001", not 1
    node = data
    for i, part in enumerate(parts[:-1]):
        node[part] = {} if node.get(part) is None else node[part]
        if not isinstance(node[part], dict):
            section = ".".join(parts[: i + 1])
            raise ConfigError(f"{where}: {section!r} is set to {node[part]!r}, not a section")
        node = node[part]
    node[parts[-1]] = value
    return ".".join(parts)


# --- The pydantic mirror of a config dataclass, and its errors reworded -----------------------------
@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(_annotation(cls))


@functools.cache
def _annotation(tp: Any) -> Any:
    """A pydantic annotation that validates ``tp`` by the module's rules."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in (bool, str):
        return Annotated[tp, pydantic.Strict()]
    if tp in (int, float):
        return Annotated[tp, pydantic.Strict(), pydantic.BeforeValidator(functools.partial(_number, tp))]
    if tp in (pathlib.Path, os.PathLike):  # a str or a Path (a base's paths are str by now)
        return pathlib.Path
    if _is_dataclass_type(tp):
        return _section(tp)
    if origin is Literal:
        return Annotated[tp, pydantic.BeforeValidator(functools.partial(_literal, tp))]
    if origin in (Union, types.UnionType):
        members = tuple(a for a in args if a is not _NONE_TYPE)
        if len(members) == 1:
            return Union[_annotation(members[0]), None]  # noqa: UP007 (built at run time)
        return Annotated[Any, pydantic.PlainValidator(functools.partial(_union, tp))]
    container = {Sequence: list, Mapping: dict}.get(origin, origin or tp)  # lax: a list makes a tuple
    if container in (list, tuple, set, frozenset, dict) and args:
        inner = container[tuple(... if a is Ellipsis else _annotation(a) for a in args)]
        if container is tuple and args[-1] is not Ellipsis:  # a fixed size: say so before the items
            return Annotated[inner, pydantic.BeforeValidator(functools.partial(_sized, len(args)))]
        return inner
    return container  # Any, a bare container, or a class (checked with isinstance)


def _section(cls: type) -> Any:
    """A ``TypedDict`` of the init fields (unknown keys forbidden) that builds ``cls`` once valid."""
    fields = {}
    for f, hint in _fields(cls).values():
        tp, section = _annotation(hint), _strip_optional(hint)
        if _is_dataclass_type(section) and f.default_factory is not section:  # an instance (or None)
            over_default = functools.partial(_over_default, f, section is not hint)
            tp = Annotated[tp, pydantic.BeforeValidator(over_default)]
        fields[f.name] = (Required if _default(f) is _MISSING else NotRequired)[tp]
    mirror = TypedDict(cls.__name__, fields)  # type: ignore[misc]
    mirror.__pydantic_config__ = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    null_is_empty = pydantic.BeforeValidator(lambda v: {} if v is None else v)  # null: all defaults
    return Annotated[mirror, null_is_empty, pydantic.AfterValidator(lambda valid: cls(**valid))]


def _over_default(f: dataclasses.Field, optional: bool, value: Any) -> Any:
    """A section defaulting to an instance (as ``--help`` shows it) is updated from it key by key."""
    default = _default(f)
    if dataclasses.is_dataclass(default) and (isinstance(value, Mapping) or (value is None and not optional)):
        return _merge(config_to_dict(default), value or {})
    return value


def _number(tp: type, value: Any) -> Any:
    """A numeric string becomes a float (PyYAML leaves ``1e-5`` a string); an int takes integral floats."""
    with contextlib.suppress(ValueError):
        number = float(value) if isinstance(value, str) else value
        if tp is float or (isinstance(number, float) and number.is_integer()):
            return number if tp is float else int(number)
    return value  # for the error message: "1.5" stays the text it was


def _sized(size: int, value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) != size:
        raise PydanticCustomError("config_size", "needs exactly {size} items", {"size": size})
    return value


def _literal(tp: Any, value: Any) -> Any:
    for allowed in typing.get_args(tp):  # 1 is not True, 1.0 is not 1
        if type(allowed) is type(value) and allowed == value:
            return allowed
    raise PydanticCustomError("config_literal", "not an allowed value")


def _union(tp: Any, value: Any) -> Any:
    # An exact type match wins before any coercion (so ``int | str`` keeps "5" a string).
    for member in sorted(typing.get_args(tp), key=lambda a: type(value) is not a):
        with contextlib.suppress(pydantic.ValidationError):
            return _adapter(member).validate_python(value)
    raise PydanticCustomError("config_union", "no member of the union fits")


def _locate(cls: type, loc: Sequence[Any], where: str = "") -> tuple[str, str, Any, Any]:
    """(dotted key, section key, type, parent type) at a pydantic ``loc`` or (checked) an override key."""
    on_key = list(loc[-1:]) == ["[key]"]  # a dict key of the wrong type
    tp, parent, key, prefix = cls, None, "", ""
    for part in loc[: len(loc) - on_key]:
        parent, inner, prefix = tp, _strip_optional(tp), key
        args = typing.get_args(inner)
        if _is_dataclass_type(inner):
            fields = _fields(inner)
            if where and part not in fields:
                raise ConfigError(f"{where}: {_unknown_key(inner, key, part)}")
            tp, key = fields[part][1] if part in fields else Any, _join(key, str(part))
        elif typing.get_origin(inner) in (dict, Mapping) or inner in (dict, Any):
            tp, key = (args[1] if len(args) == 2 else Any), _join(key, str(part))
        elif where:
            raise ConfigError(f"{where}: {key!r} is a value, not a section; cannot set {'.'.join(loc)!r}")
        else:  # a list, tuple or set item
            fixed = typing.get_origin(inner) is tuple and args[-1:] != (Ellipsis,) and part < len(args)
            tp, key = (args[part] if fixed else args[0] if args else Any), f"{key}[{part}]"
    if on_key:
        tp = (typing.get_args(_strip_optional(parent)) or (Any,))[0]
    return key, prefix, tp, parent


def _config_error(cls: type, error: Mapping[str, Any], where: Callable[[str], str]) -> ConfigError:
    """Reword one pydantic error: where the value was set, the dotted key, what was expected and what came."""
    key, prefix, tp, parent = _locate(cls, error["loc"])
    kind, value, section, cause = error["type"], error["input"], _strip_optional(tp), None
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a section key not a string
        msg = _unknown_key(_strip_optional(parent), prefix, str(error["loc"][-1]))
    elif kind == "missing":
        msg = f"missing required key {key!r}"
    elif kind in ("value_error", "assertion_error") and _is_dataclass_type(section):  # __post_init__
        cause = error["ctx"]["error"]
        if isinstance(cause, ConfigError):
            return cause
        msg = f"invalid {section.__name__}{f' (section {key!r})' if key else ''}: {cause}"
    else:
        expected = f"a mapping (section {tp.__name__})" if _is_dataclass_type(tp) else _type_name(tp)
        expected = "path" if tp in (pathlib.Path, os.PathLike) else expected
        msg = f"{key!r} expects {expected}, got {value!r} ({type(value).__name__})"
        if tp is str:
            msg += "; quote it in YAML to keep it as text"
        elif kind == "config_size":
            msg += f"; {error['msg']}"
    err = ConfigError(f"{where(key)}: {msg}")
    err.__cause__ = cause
    return err


def _unknown_key(cls: Any, prefix: str, name: str) -> str:
    """Why ``cls`` (the section at ``prefix``) has no key ``name``: renamed, misspelt or unknown."""
    dotted, renamed = _join(prefix, name), getattr(cls, "renamed_keys", {}).get(name)
    valid = list(_fields(cls))
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if renamed is not None:
        return f"{dotted!r} was renamed: use {_join(prefix, renamed)!r}"
    if close:
        return f"unknown key {dotted!r}; did you mean {_join(prefix, close[0])!r}?"
    return f"unknown key {dotted!r}; valid keys{f' in {prefix!r}' if prefix else ''}: {', '.join(valid)}"


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """The init fields of a dataclass type: name -> (field, resolved type)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _default(f: dataclasses.Field) -> Any:  # _MISSING for a required field
    return f.default_factory() if f.default_factory is not _MISSING else f.default


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _strip_optional(tp: Any) -> Any:  # X | None -> X
    args = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
    return args[0] if typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is _NONE_TYPE:
        return "any" if tp is Any else "None"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{name}[{inner}]" if args else name
    return tp.__name__ if isinstance(tp, type) else str(tp)


# --- Saving and describing --------------------------------------------------------------------------
def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config's init fields as nested plain dicts/lists/scalars, as :func:`save_config` writes them."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"config_to_dict() needs a dataclass instance, got {type(cfg).__name__}")
    return {f.name: _to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, Mapping):
        return {_to_plain(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_to_plain(v) for v in value), key=repr)
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def save_config(cfg: Any, path: str | os.PathLike) -> pathlib.Path:
    """Write ``cfg`` as YAML, atomically (temp file in the same folder, then ``os.replace``)."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def describe_config(cls: type) -> str:
    """Help text for ``--help``: one entry per key (dotted for sections) with type, default and help."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"describe_config() needs a dataclass type, got {cls!r}")
    doc = (cls.__doc__ or "").strip()
    lines = [doc, ""] if doc and not doc.startswith(f"{cls.__name__}(") else []  # not dataclasses' signature
    lines.append(f"{cls.__name__} keys (set them in YAML or as key=value):")

    def walk(cls: type, prefix: str, defaults: Any) -> None:
        for f, hint in _fields(cls).values():
            dotted, help_text = _join(prefix, f.name), f.metadata.get("help", "")
            default = _default(f) if defaults is None else getattr(defaults, f.name)
            section = _strip_optional(hint)
            if _is_dataclass_type(section) and (default in (_MISSING, None) or isinstance(default, section)):
                kind = f"section {section.__name__}" + (", optional, default None" if default is None else "")
                lines.append(f"  {dotted}: [{kind}]" + (f"  {help_text}" if help_text else ""))
                walk(section, dotted, default if isinstance(default, section) else None)
                continue
            shown = "required" if default is _MISSING else f"default {_to_plain(default)!r}"
            lines.append(f"  {dotted} ({_type_name(hint)}, {shown})")
            if help_text:
                lines.append(f"      {help_text}")

    walk(cls, "", None)
    return "\n".join(lines)
