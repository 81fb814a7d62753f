"""``key=value`` overrides of an ml_collections config, as the ``:arg`` of a config path.

    python launch/train.py --config configs/trimesh_decode/mobile.py:steps=100,optim.lr=0.001 ...
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Mapping

__all__ = ["parse_overrides", "trainer_config", "config_module"]


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
    import ml_collections

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
            raise ValueError(f"config argument {item!r} is not key=value")
        key, value = (t.strip() for t in item.split("=", 1))
        key = aliases.get(key, key)
        node = config
        *parents, leaf = key.split(".")
        try:
            for part in parents:
                node = node[part]
            old = node[leaf]
        except (KeyError, AttributeError):
            raise ValueError(f"config has no field {key!r}") from None
        if isinstance(old, bool):
            node[leaf] = value.lower() in ("1", "true", "yes")
        elif isinstance(old, (list, tuple)):
            node[leaf] = [v for v in value.split(";") if v]
        else:
            node[leaf] = type(old)(value)
    return config
