"""trimesh_decode: neural decompression of ~200-byte triangle previews.

Baluja et al., 2019. ``bitstream`` (with ``coder``) is the preview format, ``triangulate`` its
deterministic Delaunay mesh, ``raster`` the batched barycentric renderer and the decoder network's
8 input channels, ``encoder`` the stochastic hill-climbing encoder that writes previews.
"""

# The neural decoder's input and output side, as the paper's (the training crops' too).
SIZE = 256

# Where the interpolated RGB image lies among the neural decoder's 8 input channels (edge, vertex,
# interpolated RGB, coloured vertices: trimesh_decode.raster.decoder_channels).
INTERP = slice(2, 5)

# How many symmetries of the square a neural decoding may be averaged over (test-time
# self-ensembling): each count is a subgroup of the 8, see :func:`trimesh_decode.symmetry.dihedral`.
SYMMETRIES = (1, 2, 4, 8)


def check_symmetries(symmetries: int) -> int:
    if symmetries not in SYMMETRIES:
        raise ValueError(f"symmetries must be one of {', '.join(map(str, SYMMETRIES))}, got {symmetries}")
    return symmetries


# The largest --gain: how far a decoding may push past the network's correction of interpolation
# (out = interp + gain * (network - interp); 1 is the network as trained).
MAX_GAIN = 4.0


def check_gain(gain: float) -> float:
    gain = float(gain)
    if not 0.0 < gain <= MAX_GAIN:
        raise ValueError(f"gain must be in (0, {MAX_GAIN:g}], got {gain:g}")
    return gain


def gain_label(gain: float) -> str:
    """``""`` for the trained decoding, else ``_g1.5`` (etc.), for a decoder's label."""
    return "" if gain == 1.0 else f"_g{gain:g}"


def amplify(interp, out, gain: float):
    """``interp + gain * (out - interp)``: the network's correction of interpolation scaled by
    ``gain`` (NumPy or JAX arrays in [0, 1]); ``out`` itself when ``gain`` is 1."""
    return out if gain == 1.0 else interp + gain * (out - interp)
