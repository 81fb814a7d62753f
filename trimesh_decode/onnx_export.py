"""The neural decoder as an ONNX model, and a decoder that runs it with onnxruntime.

Built here from the trained variables with the ``onnx`` package's graph helpers, layer by layer as
:class:`trimesh_decode.hourglass.StackedHourglass` computes: each Conv + BatchNorm folded into one
Conv (inference statistics), ReLU, SpaceToDepth / DepthToSpace (DCR order, which is ours), the
residual sums, the heads' DepthToSpace(4) + Conv 1x1 + tanh, plus the interpolated channels
(``output="residual"``) or ``(y + 1) / 2`` (``"image"``). Why not jax2onnx: its releases pin
orbax-checkpoint below 0.11.37, older than the one the trainer uses; the hourglass needs eight ONNX
operators, so a direct build is short and has no such pin.

Model contract (opset 17, IR version 8; ``float16=True`` stores the weights in half precision and
casts them to float32 in the graph): input ``channels`` float32 (N, 256, 256, 8), NHWC, the rendered channels
of :func:`trimesh_decode.raster_cpu.decoder_channels` (edge, vertex, interpolated RGB, coloured
vertices); output ``image`` float32 (N, 256, 256, 3), NHWC, in about [0, 1] (the caller clips and
rounds, as :func:`trimesh_decode.decoding.predict` does).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from trimesh_decode import INTERP, SIZE, amplify, check_gain, check_symmetries, gain_label, raster_cpu
from trimesh_decode.hourglass import CHANNEL_SETS
from trimesh_decode.meshes import pack
from trimesh_decode.symmetry import averaged

__all__ = ["OPSET", "export_onnx", "OnnxDecoder"]

OPSET = 17
IR_VERSION = 8  # opset 17's: what onnxruntime-web and older runtimes read (the onnx package writes newer)
EPS = 1e-5  # the hourglass's BatchNorm epsilon


class _Graph:
    def __init__(self, float16: bool = False):
        import onnx  # lazy: the optional onnx extra

        self.onnx = onnx
        self.float16 = float16
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, value: np.ndarray) -> str:
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.onnx.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, kernel: np.ndarray, bias: np.ndarray, stride: int, size: int) -> str:
        """XLA's SAME padding at this input size: the extra pixel, if any, at the end."""
        k = kernel.shape[0]
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        lo, hi = total // 2, total - total // 2
        w = np.transpose(kernel, (3, 2, 0, 1))  # HWIO -> OIHW
        if self.float16:  # stored as float16, cast once to float32 (onnxruntime folds the Cast at load)
            w = self.op("Cast", [self.const("w", w.astype(np.float16))], to=self.onnx.TensorProto.FLOAT)
        else:
            w = self.const("w", w.astype(np.float32))
        b = self.const("b", bias.astype(np.float32))
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[lo, lo, hi, hi])


def _conv_bn(g: _Graph, x: str, params: dict, stats: dict, stride: int, size: int) -> str:
    kernel = np.asarray(params["Conv_0"]["kernel"], np.float64)
    bn, st = params["BatchNorm_0"], stats["BatchNorm_0"]
    scale = np.asarray(bn["scale"], np.float64) / np.sqrt(np.asarray(st["var"], np.float64) + EPS)
    bias = np.asarray(bn["bias"], np.float64) - np.asarray(st["mean"], np.float64) * scale
    return g.op("Relu", [g.conv(x, kernel * scale, bias, stride, size)])


def _level(g: _Graph, x: str, level: int, p: dict, s: dict, size: int) -> str:
    skip = _conv_bn(g, x, p[f"skip{level}"], s[f"skip{level}"], 1, size)
    low = _conv_bn(g, g.op("SpaceToDepth", [x], blocksize=2), p[f"down{level}"], s[f"down{level}"], 1, size // 2)
    if level > 1:
        low = _level(g, low, level - 1, p, s, size // 2)
    else:
        low = _conv_bn(g, low, p["bottom"], s["bottom"], 1, size // 2)
    up = _conv_bn(g, g.op("DepthToSpace", [low], blocksize=2, mode="DCR"), p[f"up{level}"], s[f"up{level}"], 1, size)
    return g.op("Add", [skip, up])


def export_onnx(decoder, path: str | Path, *, float16: bool = False) -> Path:
    """Write ``decoder`` (a :class:`trimesh_decode.models.NeuralDecoder`) as an ONNX model to ``path``;
    ``float16``: the (BatchNorm-folded) convolution weights stored as float16, half the file, the
    arithmetic still float32."""
    import onnx  # lazy: the optional onnx extra

    cfg, v = decoder.settings, decoder.variables
    params, stats = v["params"], v["batch_stats"]
    g = _Graph(float16)
    x = g.op("Transpose", ["channels"], perm=[0, 3, 1, 2])  # NHWC -> NCHW
    interp = g.op("Slice", [x, g.const("i", np.array([2])), g.const("i", np.array([5])), g.const("i", np.array([1]))])
    if len(CHANNEL_SETS[cfg["channels"]]) != 8:
        x = g.op("Gather", [x, g.const("ch", np.array(CHANNEL_SETS[cfg["channels"]], np.int64))], axis=1)
    h = _conv_bn(g, x, params["stem1"], stats["stem1"], 2, SIZE)
    h = _conv_bn(g, h, params["stem2"], stats["stem2"], 2, SIZE // 2)
    y = None
    for k in range(cfg["stacks"]):
        h = g.op("Add", [h, _level(g, h, cfg["depth"], params[f"hourglass{k}"], stats[f"hourglass{k}"], SIZE // 4)])
        head = params[f"head{k}"]
        if k == cfg["stacks"] - 1:  # the prediction: the last loss module
            d = g.op("DepthToSpace", [h], blocksize=4, mode="DCR")
            y = g.op("Tanh", [g.conv(d, np.asarray(head["kernel"]), np.asarray(head["bias"]), 1, SIZE)])
    if cfg["output"] == "residual":
        y = g.op("Add", [interp, y])
    else:
        y = g.op(
            "Mul",
            [g.op("Add", [y, g.const("one", np.array(1.0, np.float32))]), g.const("half", np.array(0.5, np.float32))],
        )
    g.nodes.append(onnx.helper.make_node("Transpose", [y], ["image"], perm=[0, 2, 3, 1]))
    graph = onnx.helper.make_graph(
        g.nodes,
        f"trimesh_decode_{decoder.name}",
        [onnx.helper.make_tensor_value_info("channels", onnx.TensorProto.FLOAT, ["N", SIZE, SIZE, 8])],
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", SIZE, SIZE, 3])],
        g.inits,
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="compat-codecs",
        ir_version=IR_VERSION,
    )
    model.doc_string = (
        f"trimesh_decode neural decoder {decoder.name}: channels (N,256,256,8) NHWC -> image (N,256,256,3)"
    )
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


class OnnxDecoder:
    """Decodes previews with an exported model in onnxruntime: the channels rendered by
    :mod:`trimesh_decode.raster_cpu` (no JAX), the network, then clip and round as the JAX decoder;
    averaged over ``symmetries`` symmetries of the square as the JAX decoder averages them."""

    def __init__(self, path: str | Path, threads: int | None = None, symmetries: int = 1):
        import onnxruntime as ort  # lazy: the optional onnx extra

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.path = Path(path)
        self.symmetries = check_symmetries(symmetries)
        self.gain = 1.0
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    @property
    def label(self) -> str:
        x = "" if self.symmetries == 1 else f"_x{self.symmetries}"
        return f"{self.path.stem}{x}{gain_label(self.gain)} (onnxruntime)"

    def averaged(self, symmetries: int) -> "OnnxDecoder":
        """The same session, decoding as the average over ``symmetries`` symmetries (1, 2, 4 or 8)."""
        twin = copy.copy(self)
        twin.symmetries = check_symmetries(symmetries)
        return twin

    def amplified(self, gain: float) -> "OnnxDecoder":
        """The same session, scaling the network's correction of interpolation by ``gain``
        (:func:`trimesh_decode.amplify`), as the JAX decoder does."""
        twin = copy.copy(self)
        twin.gain = check_gain(gain)
        return twin

    @staticmethod
    def check_installed() -> None:
        """Raise ImportError when the onnx extra is missing."""
        import onnx  # noqa: F401  # lazy: the optional onnx extra
        import onnxruntime  # noqa: F401  # lazy: the optional onnx extra

    def decode(self, previews) -> np.ndarray:
        channels = raster_cpu.decoder_channels(pack(list(previews)), SIZE, SIZE)

        def apply(x, interp):  # the graph takes the interpolated channels from its input
            return self.session.run(["image"], {"channels": np.ascontiguousarray(x)})[0]

        y = amplify(channels[..., INTERP], averaged(apply, channels, self.symmetries, np.concatenate), self.gain)
        return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
