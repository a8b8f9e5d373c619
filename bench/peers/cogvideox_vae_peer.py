#!/usr/bin/env python3
"""PyTorch peer of the CogVideoX VAE: the official diffusers `autoencoder_kl_cogvideox.py`, the
PyTorch side of bench/cogvideox_vae_bench.cc.

The project stores no official code: --diffusers_vae_py names the official file
(src/diffusers/models/autoencoders/autoencoder_kl_cogvideox.py of a diffusers checkout or copy).
It is imported unmodified, together with the official modules it uses from its `models/` folder
(`activations.py` for get_activation, `downsampling.py` for CogVideoXDownsample3D, `upsampling.py`
for CogVideoXUpsample3D). Stand-ins replace only the diffusers machinery around the math:
`ConfigMixin` / `register_to_config` (keeps the kwargs in `.config`), `ModelMixin` = nn.Module,
an empty `FromOriginalModelMixin`, `logging`, `deprecate`, `apply_forward_hook` = identity (what
the official decorator is without accelerate), `AutoencoderKLOutput` / `DecoderOutput`
containers and a `DiagonalGaussianDistribution` holding mean / logvar (clamped to [-30, 20]) as
the official one. torch 1.13 (Debian's python3-torch) needs no API stand-in for this file.

The frame batching is the fixtures' (diffusers 58eb52c, `_encode` / `_decode`): the first piece
takes the remainder (13 latent frames: [0, 3) [3, 5) ... [11, 13)), each piece runs the official
encoder / decoder with the conv_cache of the previous one. Newer diffusers copies batch with
range(0, n, batch) instead; driving the modules here keeps the arithmetic of the fixtures and of
ours whatever copy is given.

Verify against the fixtures (every case; f32, ~1e-6 relative L2):
    /usr/bin/python3 bench/peers/cogvideox_vae_peer.py --diffusers_vae_py PATH \\
        --verify ../shared/fixtures/cogvideox_vae
Benchmark (one JSON line; random weights with the CogVideoX-2B shapes of
cogvideox_2b_vae_full.names.json, by bench/cogvideox_vae_bench.cc's rule):
    /usr/bin/python3 bench/peers/cogvideox_vae_peer.py --diffusers_vae_py PATH --bench \\
        --mode decode --latent_frames 13 --height 60 --width 90 --threads 2
"""

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
import types

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

NAMES_JSON = "cogvideox_2b_vae_full.names.json"


# --- stand-ins for the diffusers machinery ------------------------------------------------------

class ConfigMixin:
    """Keeps the constructor's keyword arguments in `.config` (attribute access)."""


def register_to_config(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.config = types.SimpleNamespace(**kwargs)
    return wrapped


class DiagonalGaussianDistribution:
    """The posterior of a [B, 2C, ...] moments tensor: mean and logvar clamped to [-30, 20]."""

    def __init__(self, parameters):
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)

    def mode(self):
        return self.mean


@dataclasses.dataclass
class AutoencoderKLOutput:
    latent_dist: object


@dataclasses.dataclass
class DecoderOutput:
    sample: torch.Tensor


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__path__ = []  # importable as a package
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_official(vae_py):
    """The official autoencoder_kl_cogvideox.py as diffusers.models.autoencoders.<it>."""
    models_dir = os.path.dirname(os.path.dirname(os.path.abspath(vae_py)))
    for f in ["activations.py", "downsampling.py", "upsampling.py"]:
        if not os.path.isfile(os.path.join(models_dir, f)):
            raise SystemExit(f"{models_dir}/{f}: missing (the official models/ folder of {vae_py})")
    logging = types.SimpleNamespace(get_logger=lambda name: __import__("logging").getLogger(name))
    _module("diffusers")
    _module("diffusers.configuration_utils", ConfigMixin=ConfigMixin,
            register_to_config=register_to_config)
    _module("diffusers.loaders")
    _module("diffusers.loaders.single_file_model",
            FromOriginalModelMixin=type("FromOriginalModelMixin", (), {}))
    _module("diffusers.utils", logging=logging, deprecate=lambda *a, **k: None)
    _module("diffusers.utils.accelerate_utils", apply_forward_hook=lambda f: f)
    _module("diffusers.models")
    _module("diffusers.models.modeling_outputs", AutoencoderKLOutput=AutoencoderKLOutput)
    _module("diffusers.models.modeling_utils", ModelMixin=nn.Module)
    _module("diffusers.models.autoencoders")
    _module("diffusers.models.autoencoders.vae", DecoderOutput=DecoderOutput,
            DiagonalGaussianDistribution=DiagonalGaussianDistribution)
    # The official modules the VAE's math uses, unmodified.
    for f in ["activations", "downsampling", "upsampling"]:
        _load(f"diffusers.models.{f}", os.path.join(models_dir, f + ".py"))
    return _load("diffusers.models.autoencoders.autoencoder_kl_cogvideox", vae_py)


# --- the fixtures' frame batching around the official modules -----------------------------------

def frame_pieces(frames, size):
    """(start, end) of each piece: diffusers 58eb52c's rule (the first piece takes the remainder)."""
    n, r = max(frames // size, 1), frames % size
    pieces = []
    for i in range(n):
        start = size * i + (0 if i == 0 else r)
        end = min(size * (i + 1) + r, frames)
        if end > start:
            pieces.append((start, end))
    return pieces


def encode(vae, x):
    """Moments [B, 2C, T', h, w] of `vae.encode(x).latent_dist.parameters` at 58eb52c."""
    outs, cache = [], None
    for start, end in frame_pieces(x.shape[2], vae.num_sample_frames_batch_size):
        out, cache = vae.encoder(x[:, :, start:end], conv_cache=cache)
        outs.append(out)
    return DiagonalGaussianDistribution(torch.cat(outs, dim=2))


def decode(vae, z):
    """`vae.decode(z).sample` at 58eb52c (z unscaled: latents / scaling_factor)."""
    outs, cache = [], None
    for start, end in frame_pieces(z.shape[2], vae.num_latent_frames_batch_size):
        out, cache = vae.decoder(z[:, :, start:end], conv_cache=cache)
        outs.append(out)
    del cache
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def parse_tiling(spec):
    """"off" -> None, "on" -> the 480x720 tiles (240x360 every 200x288), "HxW:SHxSW" -> ints."""
    if spec in (None, "", "off"):
        return None
    if spec == "on":
        return 240, 360, 200, 288
    tile, stride = spec.split(":")
    return tuple(int(v) for v in tile.split("x") + stride.split("x"))


def enable_tiling(vae, tiling):
    mh, mw, sh, sw = tiling
    vae.enable_tiling(tile_sample_min_height=mh, tile_sample_min_width=mw,
                      tile_sample_stride_height=sh, tile_sample_stride_width=sw)


def tiled(vae, x, run, decode):
    """The official tiled_encode / tiled_decode (01d6a1b) around `run`, one tile through the
    fixtures' frame pieces (the official tiled methods cut frames with range(0, n, batch)):
    the same tile grid, the official vae.blend_v / vae.blend_h in the same order, the same crops.
    Matches vae.tiled_encode / vae.tiled_decode where the two piece rules agree (--tiled_cases
    checks it)."""
    f = vae.spatial_compression_ratio
    mh, mw = vae.tile_sample_min_height, vae.tile_sample_min_width
    sh, sw = vae.tile_sample_stride_height, vae.tile_sample_stride_width
    if decode:
        size, step = (mh // f, mw // f), (sh // f, sw // f)
        blend, keep = (mh - sh, mw - sw), (sh, sw)
        out = (x.shape[3] * f, x.shape[4] * f)
    else:
        size, step = (mh, mw), (sh, sw)
        blend, keep = (mh // f - sh // f, mw // f - sw // f), (sh // f, sw // f)
        out = (x.shape[3] // f, x.shape[4] // f)
    rows = []
    for i in range(0, x.shape[3], step[0]):
        row = []
        for j in range(0, x.shape[4], step[1]):
            tile = run(x[:, :, :, i : i + size[0], j : j + size[1]])
            if rows:
                tile = vae.blend_v(rows[-1][len(row)], tile, blend[0])
            if row:
                tile = vae.blend_h(row[-1], tile, blend[1])
            row.append(tile)
        rows.append(row)
    joined = [torch.cat([t[:, :, :, : keep[0], : keep[1]] for t in row], dim=4) for row in rows]
    return torch.cat(joined, dim=3)[:, :, :, : out[0], : out[1]]


def encode_moments(vae, x, tiling=None):
    """The moments of encode(vae, x), through the tiles when `tiling` applies (as _encode)."""
    if tiling and (x.shape[3] > tiling[0] or x.shape[4] > tiling[1]):
        return tiled(vae, x, lambda t: encode(vae, t).parameters, decode=False)
    return encode(vae, x).parameters


def decode_video(vae, z, tiling=None):
    """decode(vae, z), through the tiles when `tiling` applies (a latent taller or wider than
    a tile)."""
    f = vae.spatial_compression_ratio
    if tiling and (z.shape[3] > tiling[0] // f or z.shape[4] > tiling[1] // f):
        return tiled(vae, z, lambda t: decode(vae, t), decode=True)
    return decode(vae, z)


def build(official, config):
    vae = official.AutoencoderKLCogVideoX(**config)
    assert vae.num_latent_frames_batch_size == 2 and vae.num_sample_frames_batch_size == 8
    assert not vae.use_tiling and not vae.use_slicing  # enable_tiling() turns tiling on later
    return vae.eval().requires_grad_(False)


def verify(directory, official):
    from common import read_safetensors
    config = json.load(open(os.path.join(directory, "tiny_a.config.json")))["AutoencoderKLCogVideoX"]
    vae = build(official, config)
    weights, _ = read_safetensors(os.path.join(directory, "tiny_a.weights.safetensors"))
    vae.load_state_dict(weights, strict=True)
    worst, case_names = 0.0, sorted(
        f.split(".")[1] for f in os.listdir(directory) if f.startswith("tiny_a.") and
        (f.split(".")[1].startswith("enc") or f.split(".")[1].startswith("dec")))
    for case in case_names:
        t, meta = read_safetensors(os.path.join(directory, f"tiny_a.{case}.safetensors"))
        with torch.no_grad():
            if "x" in t:
                got, ref, size = encode(vae, t["x"]).parameters, t["moments"], 8
                n = t["x"].shape[2]
            else:
                got, ref, size = decode(vae, t["z"]), t["video"], 2
                n = t["z"].shape[2]
        pieces = [list(p) for p in frame_pieces(n, size)]
        assert json.loads(meta["frame_batches"]) == pieces, (case, meta["frame_batches"], pieces)
        err = ((got - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"{case}: rel L2 {err:.3g}  pieces {pieces}")
    print("OK" if worst <= 1e-5 else "FAILED", f"(worst {worst:.3g})")
    return 0 if worst <= 1e-5 else 1


def tiled_cases(out_dir, fixtures, official):
    """Writes the tiled cases of tests/models/cogvideox/testdata/tiled/: the tiny_a model through
    the official vae.tiled_encode / vae.tiled_decode, with frame counts for which the official
    methods' range(0, n, batch) pieces equal the fixtures' pieces (8 video frames: one piece;
    4 latent frames: [0, 2) [2, 4)), and the small tiles of TILING so that the grid has edge
    tiles of one latent cell."""
    from common import read_safetensors, write_safetensors
    config = json.load(open(os.path.join(fixtures, "tiny_a.config.json")))["AutoencoderKLCogVideoX"]
    vae = build(official, config)
    weights, _ = read_safetensors(os.path.join(fixtures, "tiny_a.weights.safetensors"))
    vae.load_state_dict(weights, strict=True)
    tiling = parse_tiling(TILED_CASES_TILING)
    enable_tiling(vae, tiling)
    g = torch.Generator().manual_seed(20261207)
    x = torch.rand(1, 3, 8, 40, 56, generator=g) * 2 - 1
    z = torch.randn(1, config["latent_channels"], 4, 5, 7, generator=g)
    assert frame_pieces(8, 8) == [(0, 8)] and frame_pieces(4, 2) == [(0, 2), (2, 4)]
    meta = {"tiling": TILED_CASES_TILING, "made_by": "bench/peers/cogvideox_vae_peer.py --tiled_cases",
            "official": "diffusers 01d6a1b AutoencoderKLCogVideoX.tiled_encode / tiled_decode",
            "model": "shared/fixtures/cogvideox_vae/tiny_a"}
    with torch.no_grad():
        moments = vae.encode(x).latent_dist.parameters
        video = vae.decode(z).sample
        # The benchmark's driver (the fixtures' piece rule) agrees with the official methods here.
        for got, ref in [(encode_moments(vae, x, tiling), moments), (decode_video(vae, z, tiling), video)]:
            assert got.shape == ref.shape and torch.equal(got, ref), (got.shape, ref.shape)
    c = config["latent_channels"]
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "tiny_a.tiled_enc.safetensors"),
                      {"x": x, "moments": moments, "mean": moments[:, :c].contiguous(),
                       "logvar": moments[:, c:].clamp(-30.0, 20.0).contiguous()}, meta)
    write_safetensors(os.path.join(out_dir, "tiny_a.tiled_dec.safetensors"),
                      {"z": z, "video": video}, meta)
    print(f"wrote {out_dir}: moments {list(moments.shape)}, video {list(video.shape)}")
    return 0


TILED_CASES_TILING = "32x40:16x24"


# --- the benchmark ------------------------------------------------------------------------------

def randomize(vae, seed):
    """The values of bench/cogvideox_vae_bench.cc's rule (not its random stream): norm gains
    (1-D weights) 1 + 0.1 N(0, 1), biases 0.05 N(0, 1), conv weights N(0, 1 / fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("bias"):
                p.copy_(0.05 * r)
            elif p.dim() == 1:
                p.copy_(1 + 0.1 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))


def full_size(official, fixtures):
    names = json.load(open(os.path.join(fixtures, NAMES_JSON)))
    vae = build(official, names["config"])
    got = [(n, list(p.shape)) for n, p in vae.state_dict().items()]
    want = [(t["name"], t["shape"]) for t in names["tensors"]]
    if sorted(got) != sorted(want):
        raise SystemExit(f"the official model's state_dict differs from {NAMES_JSON}")
    return vae, names["config"]


def count_conv_flops(vae):
    """Forward hooks adding 2 * (output elements) * (Cin * kernel volume) of every Conv2d / Conv3d
    (padded positions included, biases not) to the returned one-element list."""
    total = [0]

    def hook(module, inputs, output):
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        total[0] += 2 * output.numel() * module.in_channels * kernel

    for m in vae.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            m.register_forward_hook(hook)
    return total


def proc_status_mib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024.0
    return -1.0


def bench(args, official):
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    vae, config = full_size(official, args.fixtures)
    randomize(vae, args.seed)
    tiling = parse_tiling(args.tiling)
    if tiling:
        enable_tiling(vae, tiling)
    flops = count_conv_flops(vae) if args.count_flops else None
    load_s = time.perf_counter() - t0
    rss_loaded = proc_status_mib("VmRSS:")
    z_ch, f = config["latent_channels"], 2 ** (len(config["block_out_channels"]) - 1)
    encode_s = decode_s = encode_cpu_s = decode_cpu_s = 0.0
    video_shape = latent_shape = None
    with torch.no_grad():
        if args.mode != "decode":
            frames = 1 + 4 * (args.latent_frames - 1)
            video = torch.rand(1, 3, frames, args.height * f, args.width * f) * 2 - 1
            t, c = time.perf_counter(), time.process_time()
            z = encode_moments(vae, video, tiling)[:, :z_ch]
            encode_s, encode_cpu_s = time.perf_counter() - t, time.process_time() - c
            del video
        else:
            z = torch.randn(1, z_ch, args.latent_frames, args.height, args.width)
        latent_shape = list(z.shape)
        if args.mode != "encode":
            t, c = time.perf_counter(), time.process_time()
            out = decode_video(vae, z, tiling)
            decode_s, decode_cpu_s = time.perf_counter() - t, time.process_time() - c
            assert torch.isfinite(out.view(-1)[0])
            video_shape = list(out.shape)
    line = {"bench": "cogvideox_vae_peer", "official": os.path.abspath(args.diffusers_vae_py),
            "mkldnn": torch.backends.mkldnn.is_available(), "mode": args.mode, "dtype": "f32",
            "latent_frames": args.latent_frames, "height": args.height, "width": args.width,
            "latent": latent_shape, "video": video_shape, "threads": args.threads,
            "tiling": "-".join(map(str, tiling)) if tiling else "off",
            "torch": torch.__version__, "load_s": round(load_s, 2),
            "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 2),
            "encode_cpu_s": round(encode_cpu_s, 2), "decode_cpu_s": round(decode_cpu_s, 2),
            "rss_after_load_mib": round(rss_loaded), "peak_rss_mib": round(proc_status_mib("VmHWM:"))}
    if flops is not None:
        line["conv_tflop"] = flops[0] / 1e12
    print(json.dumps(line))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(line) + "\n")
    return 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--diffusers_vae_py", required=True, metavar="PATH",
                   help="the official src/diffusers/models/autoencoders/autoencoder_kl_cogvideox.py")
    p.add_argument("--verify", metavar="DIR")
    p.add_argument("--bench", action="store_true")
    p.add_argument("--mode", default="decode", choices=["decode", "encode", "both"])
    p.add_argument("--latent_frames", type=int, default=13)
    p.add_argument("--height", type=int, default=60, help="latent height (video: 8x)")
    p.add_argument("--width", type=int, default=90, help="latent width (video: 8x)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fixtures", default=os.path.join(here, "../../../shared/fixtures/cogvideox_vae"),
                   help=f"the folder of {NAMES_JSON}")
    p.add_argument("--tiling", default="off",
                   help="off, on (240x360 tiles every 200x288) or HxW:SHxSW video pixels")
    p.add_argument("--tiled_cases", metavar="DIR",
                   help="write the tiled test cases (official tiled_encode / tiled_decode) to DIR")
    p.add_argument("--json", metavar="FILE", help="also append the JSON line to FILE")
    p.add_argument("--count_flops", action="store_true",
                   help="add the conv FLOPs of the run (forward hooks) as conv_tflop")
    args = p.parse_args()
    official = import_official(args.diffusers_vae_py)
    if args.verify:
        return verify(args.verify, official)
    if args.tiled_cases:
        return tiled_cases(args.tiled_cases, args.fixtures, official)
    if args.bench:
        return bench(args, official)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
