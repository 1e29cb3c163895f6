"""Configs: one dataclass per trainer, loaded from YAML plus ``key=value`` overrides.

A trainer config is a plain ``@dataclass`` whose fields carry their help text::

    @dataclass
    class PPOConfig:
        lr: float = option(1e-5, "AdamW learning rate")
        kl_estimator: Literal["k1", "k3"] = option("k1", "per-token KL estimator")
        stop: list[str] = option([], "extra stop strings")        # list default -> default_factory

    @dataclass
    class PipelineConfig:
        sft: SFTConfig = option(SFTConfig, "supervised fine-tuning stage")  # dataclass type -> factory

    cfg = load_config(PipelineConfig, "configs/hh-demo.yaml", overrides=["ppo.lr=3e-6"])

Loading validates as it goes: unknown keys (with a "did you mean" hint), values of the wrong
type, values outside a ``Literal`` and ``ValueError``s raised by ``__post_init__`` all become a
:class:`ConfigError` that names where the bad value came from (the file or the override).

Coercion rules (strict; nothing is silently lossy):
  * ``bool``: only ``true``/``false``.
  * ``int``: ints, integral floats (``1000.0``) and numeric strings (``"1e6"``, which PyYAML
    leaves as a string); never a bool, never ``1.5``.
  * ``float``: ints, floats and numeric strings (``"1e-5"``); never a bool.
  * ``str``: strings only (quote ``"001"`` in YAML; on the command line a ``str`` field takes
    the raw text, so ``run_name=001`` gives ``"001"``).
  * ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``Literal[...]``, ``Path``,
    nested dataclasses (a mapping, or ``null``/empty for "all defaults").

This module must not import torch.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import pathlib
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = [
    "ConfigError",
    "option",
    "load_config",
    "config_to_dict",
    "save_config",
    "describe_config",
]

T = TypeVar("T")
_MISSING = dataclasses.MISSING
_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """A config file, override or value that cannot be turned into the config dataclass."""


# ---------------------------------------------------------------------------------------------
# Declaring fields


def option(default: Any = _MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text: ``lr: float = option(1e-5, "AdamW learning rate")``.

    ``default`` may be
      * a plain value (used as is);
      * a mutable value (list, dict, set, a non-frozen dataclass instance): each config gets its
        own deep copy through ``default_factory``;
      * a dataclass *type*: the section is built with that type's defaults (``default_factory``).
    Leave ``default`` out (or pass ``default_factory=...``) for a factory or a required field.
    Other keyword arguments go to :func:`dataclasses.field`; ``metadata`` is merged with the help.
    """
    metadata = dict(kw.pop("metadata", None) or {})
    metadata["help"] = help
    if default is not _MISSING:
        if "default_factory" in kw:
            raise TypeError("option(): give either default or default_factory, not both")
        if isinstance(default, type) and dataclasses.is_dataclass(default):
            kw["default_factory"] = default
        elif type(default).__hash__ is None:  # unhashable == mutable: dataclasses refuse it as default
            kw["default_factory"] = _copier(default)
        else:
            kw["default"] = default
    return dataclasses.field(metadata=metadata, **kw)


def _copier(value: Any):
    def factory():
        return copy.deepcopy(value)

    return factory


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: dict | None = None,
) -> T:
    """Build ``cls`` from ``base`` (lowest priority), then the YAML file at ``path``, then overrides.

    ``base`` and the file are merged section by section (a nested mapping in the file updates the
    base's mapping rather than replacing it). Each override is ``dotted.key=value``; the value is
    read with ``yaml.safe_load`` (``true``, ``1e-5``, ``[1, 2]``, ``null`` work; an empty value is
    ``null``). Raises :class:`ConfigError` for anything that does not fit ``cls``.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"load_config() needs a dataclass type, got {cls!r}")
    source = os.fspath(path) if path is not None else "config"
    data: dict[str, Any] = _plain(copy.deepcopy(base)) if base is not None else {}
    if not isinstance(data, dict):
        raise TypeError(f"load_config(base=...) must be a dict, got {type(base).__name__}")
    if path is not None:
        data = _merge(data, _read_yaml(source))

    origins: dict[str, str] = {}
    for item in overrides:
        key, value = _parse_override(cls, item, source)
        _set_dotted(data, key, value, where=f"override {item!r}")
        origins[key] = f"override {item!r}"

    return _build(cls, data, prefix="", ctx=_Context(source, origins))


def _read_yaml(source: str) -> dict[str, Any]:
    try:
        with open(source, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {source}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        value = _plain(value)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Dataclass instances (e.g. inside ``base``) become plain dicts so they merge like YAML."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    return value


def _parse_override(cls: type, item: str, source: str) -> tuple[str, Any]:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"malformed override {item!r}: expected key=value (e.g. ppo.lr=3e-6)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"malformed override {item!r}: empty key")
    field_type = _resolve_dotted(cls, key, where=f"override {item!r}")
    if raw.strip() == "":
        return key, None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    # A str field takes the text as typed: run_name=001 is "001", not 1.
    if _strip_optional(field_type) is str and value is not None and not isinstance(value, str):
        value = raw
    return key, value


def _resolve_dotted(cls: type, key: str, where: str) -> Any:
    """Check that a dotted key names a field of ``cls``; return the field's type (Any if unknown)."""
    tp: Any = cls
    done: list[str] = []
    for part in key.split("."):
        inner = _strip_optional(tp)
        if _is_dataclass_type(inner):
            names = _field_names(inner)
            if part not in names:
                raise ConfigError(_unknown_key_message(where, ".".join([*done, part]), part, names, done))
            tp = _hints(inner)[part]
        elif typing.get_origin(inner) in (dict, Mapping) or inner in (dict, Any):
            args = typing.get_args(inner)
            tp = args[1] if len(args) == 2 else Any
        else:
            raise ConfigError(f"{where}: {'.'.join(done)!r} is a value, not a section; cannot set {key!r}")
        done.append(part)
    return tp


def _set_dotted(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    *parents, last = key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = _plain(node.get(part))
        if child is None:
            child = {}
        if not isinstance(child, dict):
            section = ".".join(parents[: i + 1])
            raise ConfigError(f"{where}: {section!r} is set to {child!r}, not a section")
        node[part] = child
        node = child
    node[last] = value


# ---------------------------------------------------------------------------------------------
# Building and coercing


@dataclasses.dataclass
class _Context:
    source: str
    origins: dict[str, str]

    def where(self, key: str) -> str:
        """The override that set ``key`` (or one of its sections), else the file."""
        cuts = [len(key)] + [i for i in range(len(key) - 1, 0, -1) if key[i] in ".["]
        for cut in cuts:  # "ppo.stop[1]", then "ppo.stop", then "ppo"
            origin = self.origins.get(key[:cut])
            if origin is not None:
                return origin
        return self.source


class _CoerceError(Exception):
    def __init__(self, key: str, expected: str, value: Any, extra: str = ""):
        super().__init__(key, expected, value, extra)
        self.key, self.expected, self.value, self.extra = key, expected, value, extra


def _build(cls: type, data: Any, prefix: str, ctx: _Context) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        what = f"section {prefix!r}" if prefix else "the config"
        raise ConfigError(f"{ctx.where(prefix)}: {what} must be a mapping, got {data!r}")
    hints = _hints(cls)
    names = _field_names(cls)
    done = prefix.split(".") if prefix else []
    for key in data:
        if key not in names:
            dotted = _join(prefix, str(key))
            raise ConfigError(_unknown_key_message(ctx.where(dotted), dotted, str(key), names, done))

    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        dotted = _join(prefix, f.name)
        if f.name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise ConfigError(f"{ctx.where(dotted)}: missing required key {dotted!r}")
            continue
        try:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], dotted, ctx)
        except _CoerceError as e:
            got = f"{e.value!r} ({type(e.value).__name__})"
            msg = f"{ctx.where(e.key)}: {e.key!r} expects {e.expected}, got {got}"
            raise ConfigError(msg + (f"; {e.extra}" if e.extra else "")) from None

    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        section = f" (section {prefix!r})" if prefix else ""
        raise ConfigError(f"{ctx.where(prefix)}: invalid {cls.__name__}{section}: {e}") from e


def _coerce(value: Any, tp: Any, key: str, ctx: _Context) -> Any:
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is Union or origin is types.UnionType:
        if value is None and _NONE_TYPE in args:
            return None
        options = [a for a in args if a is not _NONE_TYPE]
        # An exact type match wins before any coercion (so ``int | str`` keeps "5" a string).
        ordered = sorted(options, key=lambda a: 0 if _exact_match(value, a) else 1)
        for option_tp in ordered:
            try:
                return _coerce(value, option_tp, key, ctx)
            except _CoerceError:
                continue
        raise _CoerceError(key, _type_name(tp), value)

    if origin is Literal:
        for allowed in args:
            if type(allowed) is type(value) and allowed == value:
                return allowed
        raise _CoerceError(key, _type_name(tp), value)

    if _is_dataclass_type(tp):
        if value is not None and not isinstance(value, (Mapping, tp)):
            raise _CoerceError(key, f"a mapping (section {tp.__name__})", value)
        return _build(tp, {} if value is None else value, key, ctx)

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _CoerceError(key, "bool", value)
    if tp is int:
        return _to_int(value, key)
    if tp is float:
        return _to_float(value, key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _CoerceError(key, "str", value, "quote it in YAML to keep it as text")
    if tp in (pathlib.Path, os.PathLike):
        if isinstance(value, (str, os.PathLike)):
            return pathlib.Path(value)
        raise _CoerceError(key, "path", value)

    if origin in (list, Sequence, set, frozenset) or tp in (list, set, frozenset):
        if not isinstance(value, (list, tuple)):
            raise _CoerceError(key, _type_name(tp), value)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
        container = origin if origin in (set, frozenset) else tp if tp in (set, frozenset) else list
        return container(items)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise _CoerceError(key, _type_name(tp), value)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            return tuple(_coerce(v, item_tp, f"{key}[{i}]", ctx) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _CoerceError(key, _type_name(tp), value, f"needs exactly {len(args)} items")
        return tuple(
            _coerce(v, a, f"{key}[{i}]", ctx) for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _CoerceError(key, _type_name(tp), value)
        k_tp, v_tp = args if len(args) == 2 else (Any, Any)
        return {
            _coerce(k, k_tp, f"{key}.{k}", ctx): _coerce(v, v_tp, f"{key}.{k}", ctx) for k, v in value.items()
        }

    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _CoerceError(key, _type_name(tp), value)
    return value  # an annotation we do not understand: take the value as is


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise _CoerceError(key, "int", value)
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise _CoerceError(key, "int", value) from None
    if isinstance(number, float) and number.is_integer():
        return int(number)
    raise _CoerceError(key, "int", value)


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise _CoerceError(key, "float", value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _CoerceError(key, "float", value)


def _exact_match(value: Any, tp: Any) -> bool:
    if value is None or not isinstance(tp, type):
        return False
    return type(value) is tp


# ---------------------------------------------------------------------------------------------
# Introspection helpers


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as e:
        raise TypeError(f"cannot resolve the annotations of {cls.__name__}: {e}") from e


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not _NONE_TYPE]
        if len(args) == 1:
            return args[0]
    return tp


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _unknown_key_message(where: str, dotted: str, name: str, valid: list[str], parents: list[str]) -> str:
    msg = f"{where}: unknown key {dotted!r}"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return msg + f"; did you mean {'.'.join([*parents, close[0]])!r}?"
    section = f" in {'.'.join(parents)!r}" if parents else ""
    return msg + f"; valid keys{section}: {', '.join(valid)}"


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any"
    if tp is _NONE_TYPE:
        return "None"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{name}[{inner}]" if args else name
    if isinstance(tp, type):
        return tp.__name__
    return str(tp)


# ---------------------------------------------------------------------------------------------
# Saving and describing


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain dicts/lists/scalars (what :func:`save_config` writes).

    Only ``init`` fields are included, so the result loads back with :func:`load_config`.
    """
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
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


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
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def describe_config(cls: type) -> str:
    """Help text for ``--help``: one entry per key (dotted for sections) with type, default and help."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"describe_config() needs a dataclass type, got {cls!r}")
    lines: list[str] = []
    doc = _own_doc(cls)
    if doc:
        lines += [doc, ""]
    lines.append(f"{cls.__name__} keys (set them in YAML or as key=value):")
    _describe(cls, prefix="", defaults=None, lines=lines)
    return "\n".join(lines)


def _describe(cls: type, prefix: str, defaults: Any, lines: list[str]) -> None:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        dotted = _join(prefix, f.name)
        help_text = f.metadata.get("help", "")
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        section = _strip_optional(hints[f.name])
        if _is_dataclass_type(section) and (default in (_MISSING, None) or isinstance(default, section)):
            kind = f"section {section.__name__}" + (", optional, default None" if default is None else "")
            suffix = f"  {help_text}" if help_text else ""
            lines.append(f"  {dotted}: [{kind}]{suffix}")
            _describe(section, dotted, default if isinstance(default, section) else None, lines)
            continue
        shown = "required" if default is _MISSING else f"default {_to_plain(default)!r}"
        lines.append(f"  {dotted} ({_type_name(hints[f.name])}, {shown})")
        if help_text:
            lines.append(f"      {help_text}")


def _own_doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses writes when there is no docstring
        return ""
    return doc
