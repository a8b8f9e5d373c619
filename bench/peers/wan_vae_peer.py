#!/usr/bin/env python3
"""PyTorch peer of the Wan2.1 video VAE (official `WanVAE_`), the PyTorch side of the VAE
benchmark. Written from the semantics in shared/fixtures/wan_vae/README.md (no official code
is stored in this repository), with the official execution structure: the same modules
(nn.Conv3d / nn.Conv2d with F.pad for the causal padding), the same chunking (encode: the first
frame, then 4 frames; decode: one latent frame at a time) and the same per-conv feature cache
(the last 2 input frames, concatenated in front of the next chunk), the 'Rep' state of the
temporal upsample and the one-frame cache of the temporal downsample. Parameter names equal the
official state_dict names, so the fixtures (and Wan2.1_VAE.pth) load with strict=True.

torch 1.13 (Debian's python3-torch) has no F.scaled_dot_product_attention: the attention is
softmax(q k^T / sqrt(C)) v with bmm, as the fixtures' generator's stand-in.

--official_vae_py PATH runs the official file itself instead (wan/modules/vae.py of a Wan2.1
checkout; the project stores no official code), imported unmodified with two stand-ins for what
Debian's torch 1.13 lacks: einops.rearrange (only the '(b t)' <-> 'b ... t' patterns vae.py uses)
and F.scaled_dot_product_attention (the softmax product above).

Verify against the fixtures (every case, f32 within 1e-5 relative L2):
    /usr/bin/python3 bench/peers/wan_vae_peer.py --verify ../shared/fixtures/wan_vae
Benchmark (one JSON line; random weights with the released shapes, as bench/wan_vae_bench.cc):
    /usr/bin/python3 bench/peers/wan_vae_peer.py --bench --mode decode --frames 33 --threads 2
On a GPU (tools/gpu/check.sh, part vae; bf16 weights and activations, as `cuda_check vae`; the
peak is torch.cuda.max_memory_allocated / max_memory_reserved):
    python3 bench/peers/wan_vae_peer.py --bench --device cuda --dtype bf16 --frames 81
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CACHE_FRAMES = 2
MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


class Cache:
    """Per-chunk walk over the cache slots of one encoder or decoder."""

    def __init__(self, slots):
        self.slots = [None] * slots
        self.index = 0

    def next(self):
        i = self.index
        self.index += 1
        return i


class CausalConv3d(nn.Conv3d):
    """Zero-pads H, W by p on both sides and T by 2p frames in front (the cached frames first)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__(cin, cout, kernel, stride=stride, padding=0)
        p = padding if isinstance(padding, tuple) else (padding,) * 3
        self.causal = (p[2], p[2], p[1], p[1], 2 * p[0], 0)

    def forward(self, x, history=None):
        pad = list(self.causal)
        if history is not None and pad[4] > 0:
            x = torch.cat([history, x], dim=2)
            pad[4] -= history.shape[2]
        return super().forward(F.pad(x, pad))


def cached_conv(conv, x, cache):
    """Runs a causal conv with its cache slot; the slot keeps the last 2 input frames."""
    if cache is None:
        return conv(x)
    i = cache.next()
    keep = x[:, :, -CACHE_FRAMES:].clone()
    if keep.shape[2] < CACHE_FRAMES and cache.slots[i] is not None:
        keep = torch.cat([cache.slots[i][:, :, -1:], keep], dim=2)
    out = conv(x, cache.slots[i])
    cache.slots[i] = keep
    return out


class RMSNorm(nn.Module):
    def __init__(self, dim, images):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


def per_frame(fn, x):
    b, c, t, h, w = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class Resample(nn.Module):
    def __init__(self, dim, mode):
        super().__init__()
        self.dim, self.mode = dim, mode
        up = mode.startswith("up")
        # index 0 of the official Sequential is the upsample / zero pad (no parameters)
        self.resample = nn.Sequential(nn.Identity(), nn.Conv2d(dim, dim // 2 if up else dim, 3,
                                                               padding=1 if up else 0,
                                                               stride=1 if up else 2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def spatial(self, x):
        if self.mode.startswith("up"):
            x = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").type_as(x)
        else:
            x = F.pad(x, (0, 1, 0, 1))
        return self.resample[1](x)

    def forward(self, x, cache):
        b, c, t, h, w = x.shape
        if self.mode == "upsample3d" and cache is not None:
            i = cache.next()
            if cache.slots[i] is None:
                cache.slots[i] = "first"  # the first chunk passes without the temporal conv
            else:
                keep = x[:, :, -CACHE_FRAMES:].clone()
                if keep.shape[2] < CACHE_FRAMES:
                    prev = cache.slots[i]
                    front = torch.zeros_like(keep) if isinstance(prev, str) else prev[:, :, -1:]
                    keep = torch.cat([front, keep], dim=2)
                prev = cache.slots[i]
                x = self.time_conv(x, None if isinstance(prev, str) else prev)
                cache.slots[i] = keep
                x = x.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
        x = per_frame(self.spatial, x)
        if self.mode == "downsample3d" and cache is not None:
            i = cache.next()
            if cache.slots[i] is None:
                cache.slots[i] = x.clone()  # the first chunk passes without the temporal conv
            else:
                keep = x[:, :, -1:].clone()
                x = self.time_conv(torch.cat([cache.slots[i][:, :, -1:], x], dim=2))
                cache.slots[i] = keep
        return x


class ResidualBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.residual = nn.Sequential(RMSNorm(cin, False), nn.SiLU(),
                                      CausalConv3d(cin, cout, 3, padding=1),
                                      RMSNorm(cout, False), nn.SiLU(), nn.Dropout(0.0),
                                      CausalConv3d(cout, cout, 3, padding=1))
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cache):
        h = self.shortcut(x)
        for layer in self.residual:
            x = cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = RMSNorm(dim, True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x, cache=None):
        def attend(f):
            n, c, h, w = f.shape
            q, k, v = self.to_qkv(self.norm(f)).reshape(n, 3 * c, h * w).permute(0, 2, 1).chunk(3, -1)
            a = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(c), dim=-1)
            return self.proj(torch.bmm(a, v).permute(0, 2, 1).reshape(n, c, h, w))
        return per_frame(attend, x) + x


class Encoder3d(nn.Module):
    def __init__(self, dim, z2, mult, blocks, attn_scales, temporal):
        super().__init__()
        dims = [dim * u for u in [1] + mult]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(blocks):
                layers.append(ResidualBlock(cin, cout))
                if scale in attn_scales:
                    layers.append(AttentionBlock(cout))
                cin = cout
            if i != len(mult) - 1:
                layers.append(Resample(cout, "downsample3d" if temporal[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(cout, cout), AttentionBlock(cout),
                                    ResidualBlock(cout, cout))
        self.head = nn.Sequential(RMSNorm(cout, False), nn.SiLU(), CausalConv3d(cout, z2, 3, padding=1))

    def forward(self, x, cache):
        x = cached_conv(self.conv1, x, cache)
        for layer in list(self.downsamples) + list(self.middle):
            x = layer(x, cache)
        x = self.head[1](self.head[0](x))
        return cached_conv(self.head[2], x, cache)


class Decoder3d(nn.Module):
    def __init__(self, dim, z, mult, blocks, attn_scales, temporal):
        super().__init__()
        dims = [dim * u for u in [mult[-1]] + mult[::-1]]
        scale = 1.0 / 2 ** (len(mult) - 2)
        self.conv1 = CausalConv3d(z, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            if i in (1, 2, 3):
                cin //= 2
            for _ in range(blocks + 1):
                layers.append(ResidualBlock(cin, cout))
                if scale in attn_scales:
                    layers.append(AttentionBlock(cout))
                cin = cout
            if i != len(mult) - 1:
                layers.append(Resample(cout, "upsample3d" if temporal[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(cout, False), nn.SiLU(), CausalConv3d(cout, 3, 3, padding=1))

    def forward(self, x, cache):
        x = cached_conv(self.conv1, x, cache)
        for layer in list(self.middle) + list(self.upsamples):
            x = layer(x, cache)
        x = self.head[1](self.head[0](x))
        return cached_conv(self.head[2], x, cache)


def count_causal(module):
    return sum(isinstance(m, CausalConv3d) for m in module.modules())


class WanVAE_(nn.Module):
    def __init__(self, dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                 temperal_downsample=(False, True, True), dropout=0.0):
        super().__init__()
        mult, temporal = list(dim_mult), list(temperal_downsample)
        self.z_dim = z_dim
        self.encoder = Encoder3d(dim, z_dim * 2, mult, num_res_blocks, list(attn_scales), temporal)
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(dim, z_dim, mult, num_res_blocks, list(attn_scales), temporal[::-1])

    def encode(self, x, mean, inv_std):
        cache = Cache(count_causal(self.encoder))
        outs = []
        for i in range(1 + (x.shape[2] - 1) // 4):
            cache.index = 0
            chunk = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
            outs.append(self.encoder(chunk, cache))
        mu, log_var = self.conv1(torch.cat(outs, 2)).chunk(2, dim=1)
        view = (1, self.z_dim, 1, 1, 1)
        return (mu - mean.view(view)) * inv_std.view(view), log_var

    def decode(self, z, mean, inv_std):
        view = (1, self.z_dim, 1, 1, 1)
        x = self.conv2(z / inv_std.view(view) + mean.view(view))
        cache = Cache(count_causal(self.decoder))
        outs = []
        for i in range(z.shape[2]):
            cache.index = 0
            outs.append(self.decoder(x[:, :, i:i + 1], cache))
        return torch.cat(outs, 2)


def import_official(vae_py):
    """The official wan/modules/vae.py as a module, with the stand-ins of the module docstring."""
    if "einops" not in sys.modules:
        einops = types.ModuleType("einops")

        def rearrange(x, pattern, **sizes):
            p = pattern.replace(" ", "")
            if p == "bcthw->(bt)chw":
                b, c, t, h, w = x.shape
                return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            if p == "(bt)chw->bcthw":
                t = sizes["t"]
                bt, c, h, w = x.shape
                return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
            raise ValueError(f"einops stand-in: pattern {pattern!r} not supported")

        einops.rearrange = rearrange
        sys.modules["einops"] = einops
    if not hasattr(F, "scaled_dot_product_attention"):
        F.scaled_dot_product_attention = lambda q, k, v: torch.softmax(
            torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1).matmul(v)
    spec = importlib.util.spec_from_file_location("wan_official_vae", vae_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Official(nn.Module):
    """The official WanVAE_ behind this file's encode/decode signatures."""

    def __init__(self, module, dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                 attn_scales=(), temperal_downsample=(False, True, True), dropout=0.0):
        super().__init__()
        self.vae = module.WanVAE_(dim, z_dim, list(dim_mult), num_res_blocks, list(attn_scales),
                                  list(temperal_downsample), dropout)

    def load_state_dict(self, weights, strict=True):
        return self.vae.load_state_dict(weights, strict=strict)

    def encode(self, x, mean, inv_std):
        return self.vae.encode(x, [mean, inv_std])

    def decode(self, z, mean, inv_std):
        return self.vae.decode(z, [mean, inv_std])


def make_model(official_vae_py, **config):
    if official_vae_py:
        return Official(import_official(official_vae_py), **config)
    return WanVAE_(**config)


def verify(directory, official_vae_py=None):
    from common import read_safetensors
    config = json.load(open(os.path.join(directory, "tiny_a.config.json")))["WanVAE_"]
    model = make_model(official_vae_py, **config).eval()
    weights, _ = read_safetensors(os.path.join(directory, "tiny_a.weights.safetensors"))
    model.load_state_dict(weights, strict=True)
    worst = 0.0
    for case in ["enc1", "enc2", "enc3", "dec1", "dec2", "dec3"]:
        t, _ = read_safetensors(os.path.join(directory, f"tiny_a.{case}.safetensors"))
        with torch.no_grad():
            if "x" in t:
                got, ref = model.encode(t["x"], t["scale_mean"], t["scale_inv_std"])[0], t["mu"]
            else:
                got, ref = model.decode(t["z"], t["scale_mean"], t["scale_inv_std"]), t["video_raw"]
        err = ((got - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        print(f"{case}: rel L2 {err:.3g}")
    print("OK" if worst <= 1e-5 else "FAILED", f"(worst {worst:.3g})")
    return 0 if worst <= 1e-5 else 1


def randomize(model, seed):
    """The values of bench/wan_vae_bench.cc's rule (not its random stream)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.05 * r)
            else:
                p.copy_(r / math.sqrt(p[0].numel()))


def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return -1.0


def bench(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = False  # heuristics, as ours (no timed search)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    model = make_model(args.official_vae_py).eval().requires_grad_(False)
    randomize(model, args.seed)
    model = model.to(device=device, dtype=dtype)
    sync()
    load_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    mean = torch.tensor(MEAN, device=device, dtype=dtype)
    inv_std = 1.0 / torch.tensor(STD, device=device, dtype=dtype)
    frames, h, w = args.frames, args.height, args.width
    encode_s = decode_s = encode_cpu_s = decode_cpu_s = 0.0
    with torch.no_grad():
        if args.mode != "decode":
            video = (torch.rand(1, 3, frames, h, w) * 2 - 1).to(device=device, dtype=dtype)
            sync()
            t, c = time.perf_counter(), time.process_time()
            latent = model.encode(video, mean, inv_std)[0]
            sync()
            encode_s, encode_cpu_s = time.perf_counter() - t, time.process_time() - c
            del video
        else:
            latent = torch.randn(1, 16, 1 + (frames - 1) // 4, h // 8, w // 8).to(device=device,
                                                                                 dtype=dtype)
            sync()
        if args.mode != "encode":
            t, c = time.perf_counter(), time.process_time()
            out = model.decode(latent, mean, inv_std).float().clamp_(-1, 1)
            sync()
            decode_s, decode_cpu_s = time.perf_counter() - t, time.process_time() - c
            assert torch.isfinite(out.view(-1)[0])
    line = {"bench": "wan_vae_peer", "official": bool(args.official_vae_py),
            "mkldnn": torch.backends.mkldnn.is_available(), "mode": args.mode, "dtype": args.dtype,
            "device": str(device), "frames": frames, "height": h, "width": w,
            "threads": args.threads, "torch": torch.__version__, "load_s": round(load_s, 2),
            "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 2),
            "encode_cpu_s": round(encode_cpu_s, 2), "decode_cpu_s": round(decode_cpu_s, 2),
            "peak_rss_mib": round(peak_rss_mib())}
    if cuda:
        line["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        line["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
    print(json.dumps(line))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(line) + "\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verify", metavar="DIR")
    p.add_argument("--bench", action="store_true")
    p.add_argument("--mode", default="decode", choices=["decode", "encode", "both"])
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--json", metavar="FILE", help="also append the JSON line to FILE")
    p.add_argument("--official_vae_py", metavar="PATH", help="run wan/modules/vae.py itself")
    args = p.parse_args()
    if args.verify:
        return verify(args.verify, args.official_vae_py)
    if args.bench:
        return bench(args)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
