"""``key=value`` overrides of an ml_collections config, as the ``:arg`` of a config path.

python launch/train.py --config configs/trimesh_decode/mobile.py:steps=100,optim.lr=0.001 ...
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Mapping

import ml_collections

__all__ = [
    "ConfigError",
    "parse_overrides",
    "trainer_config",
    "config_module",
    "validate",
    "choice",
    "at_least",
    "between",
    "flatten",
    "TRAINER_RULES",
]


class ConfigError(ValueError):
    """A config names a field that does not exist, or gives one a value of the wrong type or range."""


def config_module(path: str | Path) -> ModuleType:
    """A config file loaded by path (config files are not in a package), for its ``get_config(arg)``:
    one config building on another, and tests and benchmarks that read a config."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def trainer_config(package: str, name: str, *, steps: int, batch_size: int):
    """A ConfigDict holding the fields :func:`compat.trainer.train` reads, with the house defaults
    (seed 0, a log line every 50 steps, a checkpoint every 1000, 3 kept, saved asynchronously);
    a package's ``base_config`` adds its own sections."""

    c = ml_collections.ConfigDict()
    c.package = package
    c.name = name
    c.steps = steps
    c.batch_size = batch_size
    c.seed = 0
    c.log_every = 50
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.async_checkpoints = True
    return c


def parse_overrides(config, arg: str | None, aliases: Mapping[str, str] | None = None):
    """Apply ``"a=1,b.c=x"`` to ``config`` (in place; returned). Keys are dotted paths; ``aliases``
    maps short names to paths (``{"lam": "loss.lam"}``). Values take the type of the field they
    replace; lists are separated by ``;`` (``data.roots=/a;/b``); booleans are 1/true/yes or not."""
    if not arg:
        return config
    aliases = dict(aliases or {})
    for item in arg.split(","):
        if "=" not in item:
            raise ConfigError(f"config argument {item!r} is not key=value")
        key, value = (t.strip() for t in item.split("=", 1))
        key = aliases.get(key, key)
        node = config
        *parents, leaf = key.split(".")
        try:
            for part in parents:
                node = node[part]
            old = node[leaf]
        except (KeyError, AttributeError):
            raise ConfigError(f"config has no field {key!r}") from None
        if isinstance(old, bool):
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ConfigError(f"{key}={value!r}: expected a boolean (true/false, yes/no, 1/0)")
            node[leaf] = value.lower() in ("1", "true", "yes")
        elif isinstance(old, (list, tuple)):
            node[leaf] = [v for v in value.split(";") if v]
        elif isinstance(old, dict) or hasattr(old, "items"):
            raise ConfigError(f"{key} is a section, not a field: set its fields ({key}.NAME=VALUE)")
        else:
            try:
                node[leaf] = type(old)(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}={value!r}: expected {type(old).__name__}") from None
    return config


# -- validation of a resolved config -------------------------------------------------------------
# A rule takes a value and returns None when it is fine, else what was expected (a phrase).


def choice(*options):
    def rule(v):
        return None if v in options else "one of " + ", ".join(map(repr, options))

    return rule


def at_least(lo):
    def rule(v):
        return None if v >= lo else f"at least {lo}"

    return rule


def between(lo, hi):
    def rule(v):
        return None if lo <= v <= hi else f"between {lo} and {hi}"

    return rule


# the fields compat.trainer.train reads
TRAINER_RULES = {
    "steps": at_least(1),
    "batch_size": at_least(1),
    "seed": at_least(0),
    "log_every": at_least(1),
    "checkpoint_every": at_least(1),
    "keep_checkpoints": at_least(1),
}


def flatten(tree, prefix: str = "") -> dict:
    """``{"a.b": value}`` of a nested config (a ConfigDict or the dicts config.json holds)."""
    out = {}
    for k, v in tree.items():
        if hasattr(v, "items"):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _type_ok(ref, v) -> bool:
    if isinstance(ref, bool):
        return isinstance(v, bool)
    if isinstance(ref, int):
        return isinstance(v, int) and not isinstance(v, bool)
    if isinstance(ref, float):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(ref, (list, tuple)):
        return isinstance(v, (list, tuple))
    if ref is None:
        return True
    return isinstance(v, type(ref))


def validate(config, reference, rules: Mapping[str, object]) -> None:
    """Check a resolved config against ``reference`` (the package's base config: the same fields,
    values of the same types) and ``rules`` (dotted key -> rule); raises :class:`ConfigError` with
    one line naming the first problem."""
    ref, got = flatten(reference), flatten(config)
    for key in sorted(set(got) - set(ref)):
        raise ConfigError(f"config has no field {key!r}")
    for key in sorted(set(ref) - set(got)):
        raise ConfigError(f"config lacks the field {key!r}")
    for key, v in got.items():
        if not _type_ok(ref[key], v):
            raise ConfigError(f"{key}={v!r}: expected {type(ref[key]).__name__}")
    for key, rule in {**TRAINER_RULES, **rules}.items():
        if key in got:
            expected = rule(got[key])
            if expected:
                raise ConfigError(f"{key}={got[key]!r}: expected {expected}")


def upgrade(old: Mapping, base) -> dict:
    """A run's recorded config (``config.json``, written by any earlier version) as this version
    reads it: every field added since takes its value in ``base`` (a package's ``base_config()``,
    whose new fields default to what older runs computed with); the recorded values are kept, as
    are fields this version does not know (validation refuses those where it matters)."""
    out = base.to_dict() if hasattr(base, "to_dict") else dict(base)
    for key, value in old.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = upgrade(value, out[key])
        else:
            out[key] = value
    return out
