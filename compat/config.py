"""``key=value`` overrides of an ml_collections config, as the ``:arg`` of a config path.

    python launch/train.py --config configs/trimesh_decode/mobile.py:steps=100,optim.lr=0.001 ...
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["parse_overrides"]


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
