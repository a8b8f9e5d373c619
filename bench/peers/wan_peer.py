#!/usr/bin/env python3
"""PyTorch peer of the Wan2.1 text-to-video DiT (WanModel, T2V), written from the
project's spec (shared/research/models.md, section 2) and the fixture README.

It is the correctness reference for the C++ port and the PyTorch side of the benchmarks:

* parameter names equal the official state_dict names (blocks.N.self_attn.q.weight, ...),
  so official checkpoints and the fixtures load with load_state_dict(strict=True);
* float32 (or float64) on CPU reproduces the official float32 forward (~1e-7 rel);
* on CUDA, run it under torch.autocast(bfloat16): the same regions as the official code are
  kept in float32 (time embedding, modulation, modulated norm inputs, gated residual adds,
  head), and attention uses torch.nn.functional.scaled_dot_product_attention when present.

Verify against the fixtures:
    /usr/bin/python3 bench/peers/wan_peer.py --verify /work/shared/fixtures/wan21
    python3 bench/peers/wan_peer.py --verify DIR --device cuda --amp bf16
"""

import argparse
import dataclasses
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class WanConfig:
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    patch_size: tuple = (1, 2, 2)
    eps: float = 1e-6

    @property
    def head_dim(self):
        return self.dim // self.num_heads

    @classmethod
    def from_official(cls, d):
        keys = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in keys}
        if "patch_size" in kw:
            kw["patch_size"] = tuple(kw["patch_size"])
        return cls(**kw)


PRESETS = {
    # official Wan2.1 T2V-1.3B
    "1.3b": WanConfig(),
    # official Wan2.1 T2V-14B
    "14b": WanConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    # small CPU benchmark config (issue 4)
    "small": WanConfig(dim=512, ffn_dim=2048, num_heads=8, num_layers=4),
    # the fixture config tiny_a
    "tiny_a": WanConfig(dim=64, ffn_dim=128, freq_dim=32, text_dim=48, text_len=16,
                        num_heads=4, num_layers=2),
}


# ---------------------------------------------------------------------------------------
# Sub-operations
# ---------------------------------------------------------------------------------------


def sinusoid_embedding(freq_dim, t):
    """[cos(t*f_k), sin(t*f_k)], f_k = 10000^(-k/half), computed in float64. t: [B]."""
    half = freq_dim // 2
    t = t.to(torch.float64)
    k = torch.arange(half, dtype=torch.float64, device=t.device)
    f = torch.pow(torch.tensor(10000.0, dtype=torch.float64, device=t.device), -k / half)
    ang = t[:, None] * f[None, :]
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)


def rope_axis_dims(head_dim):
    """Complex pairs per axis (frame, height, width): [c - 2*(c//3), c//3, c//3]."""
    c = head_dim // 2
    return [c - 2 * (c // 3), c // 3, c // 3]


def rope_angles(grid, head_dim, device, theta=10000.0):
    """Angles [F*H*W, head_dim/2] (float64) for a token grid (F, H, W), frame-major.

    Axis a with n_a complex pairs (real dim 2*n_a) rotates pair j by
    pos_a * theta^(-2j / (2*n_a)); the per-axis angles are concatenated (f, h, w)."""
    fgrid, hgrid, wgrid = [int(v) for v in grid]
    parts = []
    for n_pairs, size in zip(rope_axis_dims(head_dim), (fgrid, hgrid, wgrid)):
        j = torch.arange(n_pairs, dtype=torch.float64, device=device)
        inv = torch.pow(torch.tensor(theta, dtype=torch.float64, device=device),
                        -(2.0 * j) / (2 * n_pairs))
        pos = torch.arange(size, dtype=torch.float64, device=device)
        parts.append(pos[:, None] * inv[None, :])  # [size, n_pairs]
    af, ah, aw = parts
    ang = torch.cat([
        af[:, None, None, :].expand(fgrid, hgrid, wgrid, af.shape[1]),
        ah[None, :, None, :].expand(fgrid, hgrid, wgrid, ah.shape[1]),
        aw[None, None, :, :].expand(fgrid, hgrid, wgrid, aw.shape[1]),
    ], dim=-1)
    return ang.reshape(fgrid * hgrid * wgrid, -1)


def apply_rope(x, cos, sin, compute_dtype):
    """x: [B, L, H, hd]; cos/sin: [B or 1, L, 1, hd/2]. Interleaved pairs (x[2j], x[2j+1]).
    Computed in compute_dtype (float64 = official), result cast back to x.dtype."""
    shp = x.shape
    xc = x.to(compute_dtype).reshape(shp[0], shp[1], shp[2], shp[3] // 2, 2)
    x0, x1 = xc[..., 0], xc[..., 1]
    o0 = x0 * cos - x1 * sin
    o1 = x0 * sin + x1 * cos
    return torch.stack([o0, o1], dim=-1).reshape(shp).to(x.dtype)


def attention(q, k, v, key_mask=None, use_sdpa=True):
    """q: [B, Lq, H, hd], k/v: [B, Lk, H, hd]; key_mask: [B, Lk] bool (True = attend) or None.
    softmax(q k^T / sqrt(hd)) v, non-causal. Returns [B, Lq, H*hd]."""
    b, lq, h, hd = q.shape
    dt = v.dtype
    q, k = q.to(dt), k.to(dt)
    q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [B, H, L, hd]
    scale = 1.0 / math.sqrt(hd)
    if use_sdpa and HAS_SDPA:
        mask = None if key_mask is None else key_mask[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        # scale q (L x hd) rather than the L x L scores: same maths, fewer flops
        s = torch.matmul(q * scale, k.transpose(-1, -2))
        if key_mask is not None:
            s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        p = torch.softmax(s, dim=-1)
        o = torch.matmul(p, v)
    return o.transpose(1, 2).reshape(b, lq, h * hd)


def no_autocast(device_type):
    """Disables autocast (CPU and CUDA) inside: the official float32 regions. A plain
    torch.autocast object, which torch.compile traces without a graph break."""
    return torch.autocast(device_type=device_type, enabled=False)


def sdpa_backend(name):
    """A context manager that restricts F.scaled_dot_product_attention to one backend
    ("flash", "cudnn", "efficient", "math"); "auto" (or a torch without
    torch.nn.attention) leaves PyTorch's own choice."""
    import contextlib

    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "math": SDPBackend.MATH}[name]
    return sdpa_kernel(backend)


def compile_blocks(model, mode):
    """torch.compile of each transformer block in place (regional compilation: the 30 or 40
    identical blocks share one compiled graph, so it compiles in about the time of one block;
    the embeddings, head and unpatchify stay eager, as diffusers' regional compile does).
    mode: a torch.compile mode ("default", "max-autotune-no-cudagraphs", ...)."""
    if not hasattr(torch, "compile"):
        raise SystemExit("torch %s has no torch.compile" % torch.__version__)
    for blk in model.blocks:
        blk.compile(mode=mode, dynamic=False)
    return model


# ---------------------------------------------------------------------------------------
# Modules (attribute names = official state_dict names)
# ---------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2 over the full width) + eps) * w; normalised in float32+."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def layer_norm_f(x, eps, fdtype, weight=None, bias=None):
    """LayerNorm over the last dim, biased variance, computed in fdtype (float32/64)."""
    return F.layer_norm(x.to(fdtype), (x.shape[-1],), weight, bias, eps)


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.norm_q = RMSNorm(d, cfg.eps)
        self.norm_k = RMSNorm(d, cfg.eps)

    def forward(self, x, rope_cos, rope_sin, rope_dtype, key_mask, use_sdpa, cap=None):
        b, l, d = x.shape
        h = self.num_heads
        q = self.norm_q(self.q(x))
        k = self.norm_k(self.k(x))
        v = self.v(x)
        if cap is not None:
            cap["sa_q"], cap["sa_k"], cap["sa_v"] = q, k, v
        q = apply_rope(q.view(b, l, h, d // h), rope_cos, rope_sin, rope_dtype)
        k = apply_rope(k.view(b, l, h, d // h), rope_cos, rope_sin, rope_dtype)
        if cap is not None:
            cap["sa_q_rope"], cap["sa_k_rope"] = q, k
        a = attention(q, k, v.view(b, l, h, d // h), key_mask, use_sdpa)
        if cap is not None:
            cap["sa_attn"] = a
        return self.o(a)


class CrossAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.norm_q = RMSNorm(d, cfg.eps)
        self.norm_k = RMSNorm(d, cfg.eps)

    def forward(self, x, ctx, use_sdpa, cap=None):
        b, l, d = x.shape
        h = self.num_heads
        q = self.norm_q(self.q(x)).view(b, l, h, d // h)
        k = self.norm_k(self.k(ctx)).view(b, ctx.shape[1], h, d // h)
        v = self.v(ctx).view(b, ctx.shape[1], h, d // h)
        a = attention(q, k, v, None, use_sdpa)  # no mask: all text_len slots attended
        if cap is not None:
            cap["ca_attn"] = a
        return self.o(a)


class WanBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.eps = cfg.eps
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d ** 0.5)
        self.self_attn = SelfAttention(cfg)
        self.norm3 = nn.LayerNorm(d, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.ffn_dim, d))

    def forward(self, x, e0, ctx, rope_cos, rope_sin, rope_dtype, key_mask, use_sdpa,
                fdtype, cap=None):
        dev = x.device.type
        with no_autocast(dev):
            m = (self.modulation.to(fdtype) + e0.to(fdtype))  # [B, 6, d]
            sh1, sc1, g1, sh2, sc2, g2 = [m[:, i : i + 1, :] for i in range(6)]
            y = layer_norm_f(x, self.eps, fdtype) * (1 + sc1) + sh1
        if cap is not None:
            cap["sa_in"] = y
        sa = self.self_attn(y, rope_cos, rope_sin, rope_dtype, key_mask, use_sdpa, cap)
        if cap is not None:
            cap["sa_out"] = sa
        with no_autocast(dev):
            x = x.to(fdtype) + sa.to(fdtype) * g1
        # cross-attention: norm3 (affine LayerNorm, fp32), no modulation, no gate
        with no_autocast(dev):
            y = layer_norm_f(x, self.eps, fdtype, self.norm3.weight.to(fdtype),
                             self.norm3.bias.to(fdtype))
        if cap is not None:
            cap["ca_in"] = y
        ca = self.cross_attn(y, ctx, use_sdpa, cap)
        if cap is not None:
            cap["ca_out"] = ca
        with no_autocast(dev):
            x = x + ca.to(fdtype)
            y = layer_norm_f(x, self.eps, fdtype) * (1 + sc2) + sh2
        if cap is not None:
            cap["ffn_in"] = y
        f = self.ffn(y)
        if cap is not None:
            cap["ffn_out"] = f
        with no_autocast(dev):
            x = x + f.to(fdtype) * g2
        return x


class Head(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.eps = cfg.eps
        n_out = cfg.out_dim * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.modulation = nn.Parameter(torch.randn(1, 2, d) / d ** 0.5)
        self.head = nn.Linear(d, n_out)

    def forward(self, x, e, fdtype):
        # whole head in float32 (official), modulated by the raw time embedding e
        with no_autocast(x.device.type):
            m = self.modulation.to(fdtype) + e.to(fdtype)[:, None, :]  # [B, 2, d]
            shift, scale = m[:, 0:1, :], m[:, 1:2, :]
            y = layer_norm_f(x, self.eps, fdtype) * (1 + scale) + shift
            return F.linear(y, self.head.weight.to(fdtype), self.head.bias.to(fdtype))


class WanModel(nn.Module):
    def __init__(self, cfg: WanConfig, use_sdpa=True, rope_dtype=torch.float64,
                 checkpoint_blocks=False):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.use_sdpa = use_sdpa
        self.rope_dtype = rope_dtype
        self.checkpoint_blocks = checkpoint_blocks
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d),
                                            nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(),
                                            nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList([WanBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)

    def init_weights(self, seed=0):
        """A Wan-like random initialisation (for benchmarks; values do not matter there)."""
        g = torch.Generator().manual_seed(seed)
        d = self.cfg.dim
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("modulation"):
                    p.copy_(torch.randn(p.shape, generator=g) / d ** 0.5)
                elif name.endswith("bias"):
                    p.zero_()
                elif ("norm" in name) and name.endswith("weight"):
                    p.fill_(1.0)
                elif name.startswith(("text_embedding", "time_embedding")):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                else:  # xavier-uniform for linear / conv weights
                    fan_out = p.shape[0]
                    fan_in = p[0].numel()
                    if p.dim() > 2:
                        rf = p[0, 0].numel()
                        fan_out, fan_in = p.shape[0] * rf, p.shape[1] * rf
                    a = math.sqrt(6.0 / (fan_in + fan_out))
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * a)
        return self

    # -- forward -------------------------------------------------------------------------

    def _fdtype(self):
        w = self.patch_embedding.weight
        return torch.float64 if w.dtype == torch.float64 else torch.float32

    def forward(self, x, t, context, seq_len=None, capture=None):
        """Official calling convention.

        x:       list of B latents [C, F_i, H_i, W_i] (or a tensor [B, C, F, H, W])
        t:       [B] timesteps (any real/int dtype; the sinusoid is computed in float64)
        context: list of B text embeddings [Lc_i, text_dim], Lc_i <= text_len (or a tensor)
        seq_len: token padding length (default: the longest sample)
        capture: optional dict; filled with intermediates of block 0 (for the fixtures)
        Returns a list of B tensors [out_dim, F_i, H_i, W_i] (float32/64).
        """
        cfg = self.cfg
        dev = self.patch_embedding.weight.device
        fdtype = self._fdtype()
        dev_type = dev.type
        pt, ph, pw = cfg.patch_size
        b = len(x)

        # --- patchify (Conv3d k = s = patch) -> tokens, frame-major
        toks, grids = [], []
        for xi in x:
            yi = self.patch_embedding(xi.unsqueeze(0))  # [1, d, F', H', W']
            grids.append(tuple(yi.shape[2:]))
            toks.append(yi.flatten(2).transpose(1, 2)[0])  # [L_i, d]
        lens = [tk.shape[0] for tk in toks]
        if seq_len is None:
            seq_len = max(lens)
        assert max(lens) <= seq_len
        hid = torch.stack([F.pad(tk, (0, 0, 0, seq_len - tk.shape[0])) for tk in toks])
        if capture is not None:
            capture["grid_sizes"] = grids
            capture["seq_lens"] = lens
            capture["patch_embed"] = toks
        key_mask = None
        if any(n != seq_len for n in lens):
            ar = torch.arange(seq_len, device=dev)
            key_mask = torch.stack([ar < n for n in lens])  # [B, seq_len]

        # --- RoPE tables [B or 1, seq_len, 1, hd/2]; padded rows get angle 0 (identity)
        hd = cfg.head_dim
        if all(g == grids[0] for g in grids):
            ang = rope_angles(grids[0], hd, dev)
            ang = F.pad(ang, (0, 0, 0, seq_len - ang.shape[0]))[None]
        else:
            ang = torch.stack([F.pad(rope_angles(g, hd, dev), (0, 0, 0, seq_len - n))
                               for g, n in zip(grids, lens)])
        ang = ang[:, :, None, :].to(self.rope_dtype)
        rope_cos, rope_sin = torch.cos(ang), torch.sin(ang)

        # --- time embedding (float32 region)
        if not torch.is_tensor(t):
            t = torch.tensor(t)
        t = t.to(dev).reshape(-1)
        with no_autocast(dev_type):
            s = sinusoid_embedding(cfg.freq_dim, t).to(fdtype)
            e = self.time_embedding(s)
            e0 = self.time_projection(e).unflatten(1, (6, cfg.dim))
        if capture is not None:
            capture["time_sinusoid"], capture["e"], capture["e0"] = s, e, e0

        # --- text embedding: zero-pad to text_len BEFORE the MLP
        ctx = torch.stack([F.pad(c.to(dev), (0, 0, 0, cfg.text_len - c.shape[0]))
                           for c in context])
        ctx = self.text_embedding(ctx.to(fdtype))
        if capture is not None:
            capture["context_emb"] = ctx

        # --- blocks
        for i, blk in enumerate(self.blocks):
            cap = {} if (capture is not None and i == 0) else None
            args = (e0, ctx, rope_cos, rope_sin, self.rope_dtype, key_mask, self.use_sdpa,
                    fdtype)
            if self.checkpoint_blocks and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint
                hid = checkpoint(blk, hid, *args, use_reentrant=False)
            else:
                hid = blk(hid, *args, cap=cap)
            if capture is not None:
                if cap is not None:
                    for k_, v_ in cap.items():
                        capture["block0_" + k_] = v_
                capture["block%d_out" % i] = hid

        # --- head (float32) and unpatchify (pt, ph, pw, c), c fastest
        u = self.head(hid, e, fdtype)  # [B, seq_len, pt*ph*pw*out]
        if capture is not None:
            capture["head_out"] = u
        outs = []
        c = cfg.out_dim
        for i in range(b):
            fg, hg, wg = grids[i]
            ui = u[i, : lens[i]].reshape(fg, hg, wg, pt, ph, pw, c)
            ui = ui.permute(6, 0, 3, 1, 4, 2, 5).reshape(c, fg * pt, hg * ph, wg * pw)
            outs.append(ui)
        return outs


# ---------------------------------------------------------------------------------------
# FLOPs (models.md section 5: matmul FLOPs only, 2 per MAC)
# ---------------------------------------------------------------------------------------


def forward_flops(cfg: WanConfig, tokens, text_tokens=None):
    """Matmul FLOPs of one forward of one sample with `tokens` video tokens."""
    L = tokens
    Lt = cfg.text_len if text_tokens is None else text_tokens
    d, ffn = cfg.dim, cfg.ffn_dim
    patch_in = cfg.in_dim * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
    patch_out = cfg.out_dim * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
    per_block = (8 * L * d * d            # self-attn q, k, v, o
                 + 4 * L * L * d          # self-attn QK^T + AV
                 + 4 * L * d * d          # cross-attn q, o
                 + 4 * Lt * d * d         # cross-attn k, v
                 + 4 * L * Lt * d         # cross-attn core
                 + 4 * L * d * ffn)       # FFN
    once = (2 * L * patch_in * d          # patch embedding
            + 2 * L * d * patch_out       # head
            + 2 * Lt * (cfg.text_dim * d + d * d)      # text MLP
            + 2 * (cfg.freq_dim * d + d * d + d * 6 * d))  # time MLP + projection
    return cfg.num_layers * per_block + once


# ---------------------------------------------------------------------------------------
# Fixture verification
# ---------------------------------------------------------------------------------------


def rel_l2(a, b):
    a = a.detach().to("cpu", torch.float64)
    b = b.detach().to("cpu", torch.float64)
    return float((a - b).norm() / b.norm())


def load_fixture_model(fixdir, device, dtype, use_sdpa, rope_dtype):
    from common import read_safetensors

    w, meta = read_safetensors(os.path.join(fixdir, "tiny_a.weights.safetensors"))
    cfg = WanConfig.from_official(json.loads(meta["config"]))
    model = WanModel(cfg, use_sdpa=use_sdpa, rope_dtype=rope_dtype)
    sd_keys = set(model.state_dict().keys())
    extra, missing = set(w) - sd_keys, sd_keys - set(w)
    if extra or missing:
        raise SystemExit("state_dict name mismatch: extra=%s missing=%s" % (sorted(extra),
                                                                            sorted(missing)))
    model.load_state_dict(w, strict=True)
    return model.to(device=device, dtype=dtype).eval(), cfg


def verify(fixdir, device="cpu", dtype=torch.float32, amp=None, use_sdpa=True,
           rope_dtype=torch.float64):
    from common import read_safetensors

    if torch.device(device).type == "cuda" and amp is None:
        # exact float32 on the GPU: no TF32 in matmuls or in cuDNN's Conv3d
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, cfg = load_fixture_model(fixdir, device, dtype, use_sdpa, rope_dtype)
    results = []
    worst = 0.0
    for case in ("case1", "case2", "case3"):
        fx, meta = read_safetensors(os.path.join(fixdir, "tiny_a.%s.safetensors" % case))
        bsz = int(meta["batch"])
        xs = [fx["x_%d" % i].to(device, dtype) for i in range(bsz)]
        cs = [fx["context_%d" % i].to(device, dtype) for i in range(bsz)]
        cap = {}
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type,
                                             dtype=amp or torch.bfloat16,
                                             enabled=amp is not None):
            outs = model(xs, fx["t"], cs, seq_len=int(fx["seq_len"][0]), capture=cap)
        errs = {}
        # global tensors
        errs["time_sinusoid"] = rel_l2(cap["time_sinusoid"], fx["time_sinusoid"])
        errs["e"] = rel_l2(cap["e"], fx["e"])
        errs["e0"] = rel_l2(cap["e0"], fx["e0"])
        errs["context_emb"] = rel_l2(cap["context_emb"], fx["context_emb"])
        assert [list(g) for g in cap["grid_sizes"]] == fx["grid_sizes"].tolist()
        assert cap["seq_lens"] == fx["seq_lens"].tolist()
        per_sample = {
            "patch_embed": lambda i, n: cap["patch_embed"][i],
            "block0_sa_in": None, "block0_sa_q": None, "block0_sa_k": None,
            "block0_sa_v": None, "block0_sa_q_rope": None, "block0_sa_k_rope": None,
            "block0_sa_attn": None, "block0_sa_out": None, "block0_ca_in": None,
            "block0_ca_attn": None, "block0_ca_out": None, "block0_ffn_in": None,
            "block0_ffn_out": None, "head_out": None,
        }
        for j in range(cfg.num_layers):
            per_sample["block%d_out" % j] = None
        for name, getter in per_sample.items():
            e_max = 0.0
            for i in range(bsz):
                n = cap["seq_lens"][i]
                ref = fx["%s_%d" % (name, i)]
                got = getter(i, n) if getter else cap[name][i, :n]
                got = got.reshape(ref.shape)
                e_max = max(e_max, rel_l2(got, ref))
            errs[name] = e_max
        out_err = max(rel_l2(outs[i], fx["out_%d" % i]) for i in range(bsz))
        out_err64 = max(rel_l2(outs[i], fx["out_%d_f64" % i]) for i in range(bsz))
        worst_inter = max(errs.values())
        # float64 runs are judged against the float64 reference, float32 against float32
        worst = max(worst, out_err64 if dtype == torch.float64 else out_err)
        rec = {"case": case, "device": device, "dtype": str(dtype).replace("torch.", ""),
               "amp": None if amp is None else str(amp).replace("torch.", ""),
               "sdpa": bool(use_sdpa and HAS_SDPA), "rope": str(rope_dtype).replace("torch.", ""),
               "out_rel_l2_vs_f32": out_err, "out_rel_l2_vs_f64": out_err64,
               "worst_intermediate": max(errs, key=errs.get), "worst_intermediate_rel_l2":
               worst_inter, "intermediates": errs}
        results.append(rec)
    return results, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", metavar="FIXDIR", default="/work/shared/fixtures/wan21",
                    help="fixture directory (tiny_a.*.safetensors)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--amp", default="none", choices=["none", "bf16"],
                    help="run under torch.autocast(bfloat16) (GPU peer numerics)")
    ap.add_argument("--no-sdpa", action="store_true", help="plain-math attention")
    ap.add_argument("--rope", default="float64", choices=["float64", "float32"])
    ap.add_argument("--tol", type=float, default=None,
                    help="fail if out rel L2 exceeds this (default 1e-5 for float32 vs the "
                    "float32 reference, 1e-12 for float64 vs the float64 reference, 3e-2 "
                    "with bf16)")
    ap.add_argument("--verbose", action="store_true", help="print every intermediate")
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype)
    amp = torch.bfloat16 if a.amp == "bf16" else None
    tol = a.tol if a.tol is not None else (
        3e-2 if amp is not None else (1e-12 if dtype == torch.float64 else 1e-5))
    results, worst = verify(a.verify, a.device, dtype, amp, not a.no_sdpa,
                            getattr(torch, a.rope))
    for r in results:
        if not a.verbose:
            r = dict(r)
            r.pop("intermediates")
        r["torch"] = torch.__version__
        print(json.dumps(r), flush=True)
    ok = worst <= tol
    print(json.dumps({"verify": "PASS" if ok else "FAIL", "worst_out_rel_l2": worst,
                      "tol": tol}), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
