#!/usr/bin/env python3
"""Writes the small test files of internal/checkpoint/testdata (run from anywhere, stdlib only).

torch is not needed: a torch.save archive is a zip holding <name>/data.pkl, a pickle whose tensors
are calls of torch._utils._rebuild_tensor_v2 on persistent ids ('storage', torch.<T>Storage, key,
location, numel), and one <name>/data/<key> record per storage. Stand-in modules named torch and
torch._utils make CPython's own pickler write exactly those GLOBALs, so the files are produced by
an independent pickle implementation, not by the Go code under test.

Files:
  torch_small.bin           state dict exercising views, dtypes, Parameter, OrderedDict state, deflate
  hostile_global.bin        data.pkl calls os.system via GLOBAL + REDUCE (must be refused)
  hostile_stack_global.bin  data.pkl calls builtins.eval via STACK_GLOBAL + REDUCE (must be refused)
  fuzz/<Target>/seed-*      seed corpora for the fuzz targets (go test fuzz v1 encoding)
"""

import collections
import json
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = (2020, 1, 1, 0, 0, 0)  # fixed zip timestamps: reproducible output


# ---- stand-in torch -------------------------------------------------------------------------

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _named(module, obj, name):
    obj.__module__ = module.__name__
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(module, name, obj)
    return obj


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")


def _rebuild_parameter(*args):
    raise AssertionError("never called")


_named(torch_utils, _rebuild_tensor_v2, "_rebuild_tensor_v2")
_named(torch_utils, _rebuild_parameter, "_rebuild_parameter")

STORAGE_TYPES = {}
for _name, _fmt in [("FloatStorage", "<f"), ("HalfStorage", "<e"), ("BFloat16Storage", None),
                    ("LongStorage", "<q")]:
    STORAGE_TYPES[_name] = _named(torch, type(_name, (), {}), _name)


class Storage:
    """A storage: its torch type name, archive key and little-endian bytes."""

    def __init__(self, type_name, key, data, itemsize):
        self.type = STORAGE_TYPES[type_name]
        self.key = key
        self.data = data
        self.numel = len(data) // itemsize


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.type, obj.key, "cpu", obj.numel)
        return None


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def f16(values):
    return struct.pack("<%de" % len(values), *values)


def bf16(values):
    # Truncation is exact for the values used (all representable in bfloat16).
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def i64(values):
    return struct.pack("<%dq" % len(values), *values)


def write_zip(path, records):
    """records: list of (name, bytes, compress_type)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data, method in records:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = method
            z.writestr(info, data)


def torch_archive(path, prefix, pickle_bytes, storages, deflate=()):
    records = [(prefix + "/data.pkl", pickle_bytes, zipfile.ZIP_STORED),
               (prefix + "/byteorder", b"little", zipfile.ZIP_STORED)]
    for s in storages:
        method = zipfile.ZIP_DEFLATED if s.key in deflate else zipfile.ZIP_STORED
        records.append((prefix + "/data/" + s.key, s.data, method))
    records.append((prefix + "/version", b"3\n", zipfile.ZIP_STORED))
    write_zip(path, records)


# ---- torch_small.bin --------------------------------------------------------------------------

def make_small():
    s0 = Storage("FloatStorage", "0", f32([0, 1, 2, 3, 4, 5]), 4)           # arange(6)
    s1 = Storage("HalfStorage", "1", f16([1.0, -2.5, 65504.0, 2.0 ** -24]), 2)
    s2 = Storage("BFloat16Storage", "2", bf16([1.0, -0.5, 3.0]), 2)
    s3 = Storage("LongStorage", "3", i64([0, 1, 2, 3, 4]), 8)
    s4 = Storage("FloatStorage", "4", f32([10, 11, 12, 13]), 4)
    sd = collections.OrderedDict()
    sd["weight"] = Tensor(s0, 0, [2, 3], [3, 1])             # [[0,1,2],[3,4,5]]
    sd["weight_t"] = Tensor(s0, 0, [3, 2], [1, 3])           # transpose: [[0,3],[1,4],[2,5]]
    sd["half"] = Tensor(s1, 0, [4], [1])
    sd["bf16"] = Tensor(s2, 0, [3], [1])                      # record is deflate-compressed
    sd["ids"] = Tensor(s3, 0, [1, 5], [5, 1])
    sd["param"] = Parameter(Tensor(s4, 2, [2], [1]))          # [12, 13], offset view
    sd["row"] = Tensor(s0, 3, [3], [1])                       # [3, 4, 5], shares storage 0
    sd["scalar"] = Tensor(s4, 1, [], [])                      # 11
    sd._metadata = collections.OrderedDict([("", {"version": 1})])  # BUILD on the OrderedDict
    import io
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(sd)
    torch_archive(os.path.join(HERE, "torch_small.bin"), "torch_small", buf.getvalue(),
                  [s0, s1, s2, s3, s4], deflate={"2"})
    return buf.getvalue()


# ---- hostile archives -------------------------------------------------------------------------

def make_hostile():
    # GLOBAL 'os system' + REDUCE: what pickle.dumps of a __reduce__ returning os.system writes.
    cmd = b"touch /tmp/checkpoint-pwned"
    p1 = (b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", len(cmd)) + cmd
          + b"\x85" + b"R" + b".")
    torch_archive(os.path.join(HERE, "hostile_global.bin"), "archive", p1, [])
    # Protocol 4: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL, arg, REDUCE.
    expr = b"__import__('os').system('touch /tmp/checkpoint-pwned')"
    p2 = (b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04eval" + b"\x93"
          + b"X" + struct.pack("<I", len(expr)) + expr + b"\x85" + b"R" + b".")
    torch_archive(os.path.join(HERE, "hostile_stack_global.bin"), "archive", p2, [])
    return p1, p2


# ---- fuzz seeds -------------------------------------------------------------------------------

def go_bytes_literal(data):
    out = []
    for b in data:
        c = chr(b)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif 0x20 <= b < 0x7f:
            out.append(c)
        else:
            out.append("\\x%02x" % b)
    return '[]byte("' + "".join(out) + '")'


def write_seed(target, name, data):
    d = os.path.join(HERE, "fuzz", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "w") as f:
        f.write("go test fuzz v1\n" + go_bytes_literal(data) + "\n")


def safetensors_bytes(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def make_seeds(small_pickle, hostile):
    write_seed("FuzzSafetensorsHeader", "valid", safetensors_bytes(
        {"__metadata__": {"format": "pt"},
         "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "I64", "shape": [1, 1], "data_offsets": [8, 16]},
         "c": {"dtype": "F16", "shape": [0], "data_offsets": [16, 16]}},
        f32([1, 2]) + i64([7])))
    write_seed("FuzzSafetensorsHeader", "overlap", safetensors_bytes(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, f32([1, 2])))
    with open(os.path.join(HERE, "torch_small.bin"), "rb") as f:
        write_seed("FuzzTorchZip", "small", f.read())
    with open(os.path.join(HERE, "hostile_global.bin"), "rb") as f:
        write_seed("FuzzTorchZip", "hostile", f.read())
    write_seed("FuzzPickle", "small", small_pickle)
    write_seed("FuzzPickle", "hostile_global", hostile[0])
    write_seed("FuzzPickle", "hostile_stack_global", hostile[1])
    write_seed("FuzzConfig", "clip", json.dumps({
        "model_type": "clip", "projection_dim": 24, "torch_dtype": "float32",
        "vision_config": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                          "num_hidden_layers": 2, "patch_size": 14, "image_size": 224,
                          "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05}}).encode())
    write_seed("FuzzConfig", "legacy_dict", json.dumps({
        "model_type": "clip", "projection_dim": 768,
        "vision_config": {"hidden_size": 768},
        "vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096,
                               "num_attention_heads": 16, "num_hidden_layers": 24,
                               "patch_size": 14}}).encode())
    write_seed("FuzzConfig", "bare", json.dumps({"model_type": "clip_vision_model",
                                                 "hidden_act": "gelu"}).encode())


if __name__ == "__main__":
    small = make_small()
    hostile = make_hostile()
    make_seeds(small, hostile)
