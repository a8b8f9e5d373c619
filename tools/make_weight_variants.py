#!/usr/bin/python3
"""Writes other on-disk forms of a fixture's weights, for the weight-loading tests.

Run with Debian's python3-torch (/usr/bin/python3); tests never need torch, they read the files
this script wrote and committed under tests/io/testdata/.

  make_weight_variants.py pth WEIGHTS.safetensors OUT.pth [--dtype=f32|bf16]
      torch.save(state_dict) of the weights (an OrderedDict, as Module.state_dict() returns).
  make_weight_variants.py vae-diffusers WEIGHTS.safetensors OUT.safetensors
      the Wan2.1 VAE weights under diffusers AutoencoderKLWan names.
  make_weight_variants.py vae-diffusers-names NAMES.json OUT.json
      {official name: diffusers name} for the names of a *.names.json listing.
  make_weight_variants.py views OUT.pth
      a small state_dict of awkward tensors: a transpose, a slice at a storage offset, two
      tensors sharing one storage, f16 / f64 / i64 / bool / bf16, a nested dict and scalars.

The diffusers names follow diffusers' scripts/convert_wan_to_diffusers.py (convert_vae),
re-implemented here from its rules so that the C++ table in models/wan21/vae_names.cc is checked
against an independent implementation.
"""
import collections
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
from common import write_safetensors  # noqa: E402

DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = collections.OrderedDict()
    for name in sorted(header):
        if name == "__metadata__":
            continue
        info = header[name]
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if raw else \
            torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


RESIDUAL = [("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
            ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut.")]


def residual(rest):
    for old, new in RESIDUAL:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise ValueError(rest)


def vae_diffusers_name(name):
    """The AutoencoderKLWan name of an official WanVAE_ name (Wan2.1 layout)."""
    top = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
    for old, new in top.items():
        if name.startswith(old):
            return new + name[len(old):]
    coder, rest = name.split(".", 1)
    fixed = {"conv1.": "conv_in.", "head.0.": "norm_out.", "head.2.": "conv_out.",
             "middle.1.": "mid_block.attentions.0."}
    for old, new in fixed.items():
        if rest.startswith(old):
            return f"{coder}.{new}{rest[len(old):]}"
    if rest.startswith("middle."):
        _, i, tail = rest.split(".", 2)
        return f"{coder}.mid_block.resnets.{int(i) // 2}.{residual(tail)}"
    if rest.startswith("downsamples."):
        _, i, tail = rest.split(".", 2)
        if tail.startswith(("resample.", "time_conv.")):
            return f"{coder}.down_blocks.{i}.{tail}"
        return f"{coder}.down_blocks.{i}.{residual(tail)}"
    if rest.startswith("upsamples."):
        _, i, tail = rest.split(".", 2)
        block, within = divmod(int(i), 4)
        if within == 3:
            return f"{coder}.up_blocks.{block}.upsamplers.0.{tail}"
        return f"{coder}.up_blocks.{block}.resnets.{within}.{residual(tail)}"
    raise ValueError(name)


def views_state_dict():
    torch.manual_seed(0)
    base = torch.randn(4, 6)
    shared = torch.arange(12, dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["plain"] = torch.randn(3, 5)
    sd["transposed"] = base.t()                      # strides (1, 6)
    sd["sliced"] = base[1:3, 2:5]                    # offset 8, strides (6, 1)
    sd["shared.a"] = shared[:6].view(2, 3)           # one storage, two tensors
    sd["shared.b"] = shared[6:]
    sd["half"] = torch.randn(7).half()
    sd["bf16"] = torch.randn(2, 3).bfloat16()
    sd["double"] = torch.randn(2, 2).double()
    sd["long"] = torch.tensor([-3, 0, 1 << 40])
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.ones(2))
    sd["nested"] = {"inner": torch.full((2,), 7.0), "deeper": {"x": torch.tensor([1.0])}}
    sd["epoch"] = 3
    sd["note"] = "hello"
    return sd


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    mode = argv[1]
    if mode == "pth":
        src, out = argv[2], argv[3]
        dtype = {"--dtype=f32": None, "--dtype=bf16": torch.bfloat16}[argv[4] if len(argv) > 4
                                                                       else "--dtype=f32"]
        sd = read_safetensors(src)
        if dtype is not None:
            sd = collections.OrderedDict((k, v.to(dtype)) for k, v in sd.items())
        torch.save(sd, out)
    elif mode == "vae-diffusers":
        sd = read_safetensors(argv[2])
        write_safetensors(argv[3], collections.OrderedDict(
            (vae_diffusers_name(k), v) for k, v in sd.items()))
    elif mode == "vae-diffusers-names":
        names = [t["name"] for t in json.load(open(argv[2]))["tensors"]]
        with open(argv[3], "w") as f:
            json.dump({n: vae_diffusers_name(n) for n in names}, f, indent=1, sort_keys=True)
            f.write("\n")
    elif mode == "views":
        torch.save(views_state_dict(), argv[2])
    else:
        sys.exit(f"unknown mode {mode!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
