"""One configuration mechanism for every entry point.

A stage's default YAML file (``configs/<stage>/...``) is both its defaults and its schema: a user
config file and ``--set key=value`` overrides may only change keys that the defaults define, and
each new value must have the default's type. The resolved config is a plain nested ``dict`` that
entry points save beside their outputs with :func:`save_config`.

Type rules (``default`` -> accepted values):

- ``bool`` -> ``bool`` only (``--set flag=true``);
- ``int`` -> ``int``; ``float`` -> ``float`` or ``int`` (stored as ``float``);
- ``str`` -> ``str``; ``list`` -> ``list``; ``dict`` -> ``dict`` (merged key by key);
- ``{}`` (an empty mapping) -> any mapping (an open map such as ``labels.annotation_map``);
- ``null`` -> anything (the key is optional; its consumer validates it).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from runtime.files import atomic_write

__all__ = [
    "add_override_argument",
    "check_values",
    "ConfigError",
    "UsageError",
    "load_config",
    "merge_config",
    "parse_override",
    "save_config",
    "CONFIG_DIR",
]

#: The project's ``configs/`` folder.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class UsageError(ValueError):
    """Bad user input: an option, a config value, a data folder or file the user gave.

    Entry points report it as ``"<prog>: error: <message>"`` with exit status 2 and no traceback
    (:func:`runtime.entry.run_entry`); any other exception is a bug and shows its traceback. A subclass
    of ``ValueError``, so ``except ValueError`` still catches it.
    """


class ConfigError(UsageError):
    """An unknown key, a wrong type or an unreadable config file."""


def check_values(cfg: dict, checks: dict) -> None:
    """Check config values that the schema's type checks cannot express (ranges, choices, non-null).

    The one value check of every config (pretraining, fine-tuning, prediction).

    Parameters
    ----------
    cfg : dict
        A resolved config.
    checks : dict
        Dotted key -> ``(predicate, allowed)``: ``predicate(value)`` is True for a valid value;
        ``allowed`` describes the valid values for the message (``">= 1"``, ``"one of ['a', 'b']"``).
        A key whose value is null fails unless the predicate accepts None.

    Raises
    ------
    ConfigError
        "Invalid value for the config key 'k'. Allowed values are ..., but got ... instead." for the first
        key that fails.
    """
    for key, (predicate, allowed) in checks.items():
        value = cfg
        for part in key.split("."):
            value = value[part]
        try:
            ok = bool(predicate(value))
        except TypeError:  # e.g. None compared with a number
            ok = False
        if not ok:
            raise ConfigError(
                f"Invalid value for the config key '{key}'. Allowed values are {allowed}, "
                f"but got {value!r} instead."
            )


def _read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys, got {type(data).__name__}.")
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_value(key: str, default: Any, value: Any, source: str) -> Any:
    """Return ``value`` checked against the type of ``default`` (ints widen to floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"Invalid type for the config key '{key}' ({source}): expected {_type_name(default)} "
            f"like the default {default!r}, but got {_type_name(value)} {value!r} instead."
        )
    return value


def merge_config(
    defaults: dict, update: dict, source: str = "config", prefix: str = "", schema: dict | None = None
) -> dict:
    """Merge ``update`` into a copy of ``defaults``, refusing unknown keys and wrong types.

    Parameters
    ----------
    defaults : dict
        The schema and default values (nested mappings allowed).
    update : dict
        The values to change; nested mappings are merged key by key.
    source : str
        Where ``update`` comes from, quoted in error messages (a file name, ``--set``).
    prefix : str
        Dotted key of ``defaults`` inside the full config, for error messages.
    schema : dict | None
        The stage's own defaults, where an open mapping is ``{}`` (None: ``defaults``). Give it when
        ``defaults`` is an already resolved config, so that an open mapping that an earlier layer filled
        still takes new keys (``--set reader.data_format=int16 reader.date_format=dd/mm/yy``).

    Returns
    -------
    merged : dict
        A new dict; neither input is modified.

    Raises
    ------
    ConfigError
        If ``update`` holds a key that ``defaults`` lacks, or a value of another type.
    """
    merged = copy.deepcopy(defaults)
    schema = defaults if schema is None else schema
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            allowed = ", ".join(sorted(f"{prefix}{k}" for k in defaults))
            raise ConfigError(f"Unknown config key '{dotted}' ({source}). Allowed keys are: {allowed}.")
        default = defaults[key]
        if schema.get(key) == {} and isinstance(value, dict):  # an open mapping (e.g. a name -> label map)
            merged[key] = {**(default if isinstance(default, dict) else {}), **copy.deepcopy(value)}
        elif isinstance(default, dict) and isinstance(value, dict):
            sub_schema = schema.get(key) if isinstance(schema.get(key), dict) else default
            merged[key] = merge_config(default, value, source, prefix=f"{dotted}.", schema=sub_schema)
        elif isinstance(default, dict) and value is not None:
            raise ConfigError(
                f"Invalid type for the config key '{dotted}' ({source}): expected a mapping, "
                f"but got {_type_name(value)} {value!r} instead."
            )
        else:
            merged[key] = _check_value(dotted, default, value, source)
    return merged


def parse_override(text: str) -> dict:
    """Turn ``"a.b=value"`` into ``{"a": {"b": value}}``, the value parsed as YAML.

    ``--set filter.l_freq=1e-1`` gives a float (plain YAML would read ``1e-1`` as a string),
    ``--set montage.pairs=[FP1-F7,F7-T7]`` a list, ``--set notch_freq=null`` None.

    Raises
    ------
    ConfigError
        If ``text`` has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"Invalid value for --set: expected key=value (e.g. window_s=4.0), but got {text!r}."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string; numbers are meant.
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            pass
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def add_override_argument(parser, example: str = "optim.base_lr=5e-4") -> None:
    """Add every entry point's ``--set KEY=VALUE [KEY=VALUE ...]`` option (repeatable) to ``parser``.

    The values land in ``args.overrides`` (a list of str) for :func:`load_config`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    example : str
        One or more ``key=value`` examples shown in the help.
    """
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"config overrides with dotted keys (repeatable), e.g. --set {example}",
    )


def load_config(
    defaults: str | os.PathLike,
    config: str | os.PathLike | list | tuple | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict:
    """Resolve a stage's config: defaults, then config files in order, then ``--set`` overrides.

    Parameters
    ----------
    defaults : path-like
        The stage's default YAML file; it defines every allowed key and its type.
    config : path-like | list of path-like | None
        A user YAML file that changes some of the defaults (any subset of the keys), or a list of
        such files applied in order, each over the result of the previous ones (fine-tuning resolves
        ``_base.yaml`` <- ``<task>.yaml`` <- the user's ``--config``). Every file is checked against
        the keys and types of ``defaults``. A file that is ``defaults`` itself is skipped; ``None``
        entries of a list are skipped.
    overrides : list of str
        ``key=value`` strings (dotted keys for nested values), applied last.

    Returns
    -------
    config : dict
        The resolved config.

    Raises
    ------
    FileNotFoundError
        If a config file does not exist.
    TypeError
        If ``config`` (or an entry of the list) is neither a path nor None.
    ConfigError
        On invalid YAML, an unknown key or a value of the wrong type (the message names the key
        and the file or ``--set``).
    """
    resolved = schema = _read_yaml(defaults)
    if config is None:
        layers = []
    elif isinstance(config, (list, tuple)):
        layers = [path for path in config if path is not None]
    else:
        layers = [config]
    for path in layers:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"Invalid value for the 'config' parameter. Allowed values are a path, a list of paths "
                f"or None, but got {type(path).__name__} {path!r} instead."
            )
        if Path(path).resolve() != Path(defaults).resolve():
            resolved = merge_config(resolved, _read_yaml(path), source=str(path), schema=schema)
    for text in overrides:
        resolved = merge_config(resolved, parse_override(text), source=f"--set {text}", schema=schema)
    return resolved


def save_config(config: dict, path: str | os.PathLike) -> Path:
    """Write ``config`` as YAML to ``path`` atomically (temporary file, then rename)."""
    with atomic_write(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return Path(path)
