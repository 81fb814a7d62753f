"""The neural decoder of Baluja et al. (2019): a stack of hourglasses from the 8 preview channels
to a 256x256 RGB image.

As the paper builds it (Sec. 3, Fig. 4):

* a stem, Conv 7x7 stride 2 then Conv 3x3 stride 2, takes the ``256 x 256 x 8`` input to
  ``64 x 64 x width``;
* each hourglass (Newell et al. 2016) goes down with SpaceToDepth(2) + Conv 3x3 and up with
  DepthToSpace(2) + Conv 3x3 (no max-pooling, no nearest-neighbour upsampling), ``depth`` times, with
  a Conv 3x3 skip branch at every resolution added back on the way up;
* each hourglass's output is added to its input and passed to the next hourglass;
* after every hourglass a loss module, DepthToSpace(4) + Conv 1x1 to 3 channels + tanh, gives a
  ``256 x 256`` RGB image (intermediate supervision); the last one's image is the prediction;
* every convolution is followed by BatchNorm and ReLU, except the loss modules' (tanh).

``width`` 256 is the paper's (``paper`` config), 64 the ``mobile`` one. The input side must be a
multiple of ``4 * 2**depth`` (64 for the default depth 4).

``output="image"`` is the paper's: the tanh output, mapped to [0, 1], is the image.
``output="residual"`` (an option of ours, off in ``paper``) adds the tanh output to the interpolated
RGB channels instead, and its heads start at zero, so an untrained network is the interpolation
decoder.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Hourglass",
    "StackedHourglass",
    "widen",
    "space_to_depth",
    "depth_to_space",
    "CHANNEL_SETS",
    "select_channels",
]

# The decoder's input channels (trimesh_decode.raster.decoder_channels) and the ablations of them.
CHANNEL_SETS: dict[str, tuple[int, ...]] = {
    "all": (0, 1, 2, 3, 4, 5, 6, 7),  # edge, vertex, interpolated RGB, coloured vertices
    "no_interp": (0, 1, 5, 6, 7),  # without the interpolated image
    "interp_only": (2, 3, 4),  # the interpolated image alone
}


def select_channels(channels: jax.Array, name: str) -> jax.Array:
    """The ablation ``name``'s channels of an (..., 8) array."""
    if name not in CHANNEL_SETS:
        raise ValueError(f"unknown channel set {name!r}; choose from {', '.join(CHANNEL_SETS)}")
    idx = CHANNEL_SETS[name]
    return channels if len(idx) == channels.shape[-1] else channels[..., jnp.asarray(idx)]


def space_to_depth(x: jax.Array, r: int) -> jax.Array:
    """(B, H, W, C) -> (B, H/r, W/r, r*r*C); each r x r block becomes one pixel."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // r, w // r, r * r * c)


def depth_to_space(x: jax.Array, r: int) -> jax.Array:
    """(B, H, W, r*r*C) -> (B, H*r, W*r, C); the inverse of :func:`space_to_depth`."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, r, r, c // (r * r)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, c // (r * r))


class ConvBN(nn.Module):
    features: int
    kernel: int = 3
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding="SAME", use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        return nn.relu(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at constant width."""

    width: int
    depth: int = 4

    @nn.compact
    def __call__(self, x, train: bool):
        return self._level(x, self.depth, train)

    def _level(self, x, level: int, train: bool):
        skip = ConvBN(self.width, name=f"skip{level}")(x, train)
        low = ConvBN(self.width, name=f"down{level}")(space_to_depth(x, 2), train)
        if level > 1:
            low = self._level(low, level - 1, train)
        else:
            low = ConvBN(self.width, name="bottom")(low, train)
        up = ConvBN(self.width, name=f"up{level}")(depth_to_space(low, 2), train)
        return skip + up


class StackedHourglass(nn.Module):
    """``(B, H, W, C) channels -> list of (B, H, W, 3) images in [0, 1]``, one per hourglass; the
    last is the prediction. ``interp`` (B, H, W, 3) is needed for ``output="residual"``."""

    width: int = 64
    stacks: int = 2
    depth: int = 4
    output: str = "image"

    @nn.compact
    def __call__(self, x, train: bool = False, interp: jax.Array | None = None) -> Sequence[jax.Array]:
        if self.output not in ("image", "residual"):
            raise ValueError(f"output must be 'image' or 'residual', got {self.output!r}")
        if self.output == "residual" and interp is None:
            raise ValueError("output='residual' needs the interpolated image")
        if self.width % 16:
            raise ValueError(f"width {self.width} must be a multiple of 16 (the loss modules' DepthToSpace(4))")
        unit = 4 * 2**self.depth
        if x.shape[1] % unit or x.shape[2] % unit:
            raise ValueError(f"input {x.shape[1]}x{x.shape[2]}: each side must be a multiple of {unit}")
        h = ConvBN(self.width, kernel=7, stride=2, name="stem1")(x, train)
        h = ConvBN(self.width, kernel=3, stride=2, name="stem2")(h, train)
        images = []
        for s in range(self.stacks):
            h = h + Hourglass(self.width, self.depth, name=f"hourglass{s}")(h, train)
            # residual heads start at zero, so the untrained network returns the interpolation
            init = nn.initializers.zeros if self.output == "residual" else nn.initializers.lecun_normal()
            y = nn.Conv(3, (1, 1), kernel_init=init, name=f"head{s}")(depth_to_space(h, 4))
            y = jnp.tanh(y)
            images.append(interp + y if self.output == "residual" else (y + 1.0) / 2.0)
        return images


# -- widening a trained decoder (Net2WiderNet, Chen et al. 2016) ---------------------------------


def _channel_map(new: int, old: int, blocks: int) -> np.ndarray:
    """For each of ``new`` channels, the one of ``old`` it copies. The channels fall in ``blocks``
    equal runs (the sub-pixel positions of a DepthToSpace): a copy stays in its own run, so the
    image a DepthToSpace makes of the copies is the old one's."""
    n, o = new // blocks, old // blocks
    idx = np.arange(new)
    return (idx // n) * o + (idx % n) % o


def widen(variables: dict, width: int, new_width: int, seed: int = 0) -> dict:
    """The variables of a :class:`StackedHourglass` of ``width`` filters as one of ``new_width``
    (both multiples of 16) that computes the same function: every channel of the wider network
    copies one of the narrower's (weights, biases, BatchNorm scale, shift and statistics), and the
    weights that read a channel's copies share its weight out between them in random proportions
    that sum to one. The copies start equal in value but not in weights, so training moves them apart.
    """
    if width % 16 or new_width % 16 or new_width < width:
        raise ValueError(f"widening {width} -> {new_width}: both must be multiples of 16, the new one no smaller")
    rng = np.random.default_rng(seed)
    out_map = _channel_map(new_width, width, 16)  # every width-sized activation
    in_maps = {
        "stem1": None,  # the input channels
        "down": np.concatenate([p * width + out_map for p in range(4)]),  # SpaceToDepth(2) of a width activation
        "up": _channel_map(new_width // 4, width // 4, 4),  # DepthToSpace(2) of one
        "head": _channel_map(new_width // 16, width // 16, 1),  # DepthToSpace(4) of one
    }

    def in_map_of(name: str) -> np.ndarray | None:
        for key, m in in_maps.items():
            if name.startswith(key):
                return m
        return out_map  # stem2, skip*, bottom: a width activation as it is

    def kernel(k: np.ndarray, i_map, o_map) -> np.ndarray:
        k = np.asarray(k, np.float32)
        if i_map is not None:
            k = k[..., i_map, :]
            # share each old weight between the copies of its input channel: u / (sum of u over the copies)
            u = rng.uniform(0.5, 1.5, k.shape).astype(np.float32)
            total = np.zeros(k.shape[:-2] + (int(i_map.max()) + 1, k.shape[-1]), np.float32)
            np.add.at(total, (..., i_map, slice(None)), u)
            k = k * u / total[..., i_map, :]
        return k if o_map is None else k[..., o_map]

    def layer(name: str, tree: dict) -> dict:
        is_head = name.startswith("head")
        o_map = None if is_head else out_map
        out = {}
        for key, v in tree.items():
            if hasattr(v, "items"):
                out[key] = layer(name, dict(v))
            elif key == "kernel":
                out[key] = kernel(v, in_map_of(name), o_map)
            else:  # bias, BatchNorm scale / bias / mean / var: one per output channel
                out[key] = np.asarray(v, np.float32) if o_map is None else np.asarray(v, np.float32)[..., o_map]
        return out

    def walk(tree: dict) -> dict:
        out = {}
        for name, v in tree.items():
            if name.startswith("hourglass"):
                out[name] = {n: layer(n, dict(sub)) for n, sub in dict(v).items()}
            else:
                out[name] = layer(name, dict(v))
        return out

    return {"params": walk(dict(variables["params"])), "batch_stats": walk(dict(variables["batch_stats"]))}
