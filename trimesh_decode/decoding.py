"""Neural decoding of previews with a trained stacked hourglass: the 8 rendered channels
(:func:`trimesh_decode.raster.decoder_channels`) -> the network -> uint8 images, optionally
averaged over symmetries of the square (test-time self-ensembling). The train task, the shipped
models (:mod:`trimesh_decode.models`), evaluation and the CLI all decode through here."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from trimesh_decode import INTERP, SIZE, amplify, raster
from trimesh_decode.hourglass import StackedHourglass, select_channels
from trimesh_decode.meshes import Mesh, pack
from trimesh_decode.symmetry import averaged, dihedral

__all__ = ["SIZE", "dihedral", "decode_channels", "predict"]


def decode_channels(apply, channels, symmetries: int = 1):
    """``apply(x, interp)``'s decoding of the rendered channels (B, H, W, 8), averaged over the first
    ``symmetries`` symmetries of the square (:func:`trimesh_decode.symmetry.averaged`)."""
    return averaged(apply, channels, symmetries, jnp.concatenate)


@functools.partial(jax.jit, static_argnames=("model", "channels", "symmetries", "gain"))
def _predict(variables, mesh: Mesh, model: StackedHourglass, channels: str, symmetries: int = 1, gain: float = 1.0):
    def apply(x, interp):
        return model.apply(variables, select_channels(x, channels), train=False, interp=interp)[-1]

    x = raster.decoder_channels(mesh, SIZE, SIZE)
    return amplify(x[..., INTERP], decode_channels(apply, x, symmetries), gain)


def predict(
    variables: dict,
    previews,
    model: StackedHourglass,
    channels: str = "all",
    symmetries: int = 1,
    gain: float = 1.0,
) -> np.ndarray:
    """Neural decoding of previews: uint8 (B, 256, 256, 3). ``variables``: ``{"params", "batch_stats"}``;
    ``symmetries``: average the decodings of that many symmetries of the input
    (:data:`trimesh_decode.SYMMETRIES`; 8 gives +0.02 dB on Kodak for 8x the time); ``gain``: scale
    the network's correction of interpolation (:func:`trimesh_decode.amplify`; 1: as trained)."""
    mesh = pack(list(previews))
    out = _predict(variables, mesh, model, channels, symmetries, float(gain))
    return np.clip(np.round(np.asarray(out) * 255.0), 0, 255).astype(np.uint8)
