#!/usr/bin/env python3
"""umT5 encoder on the CPU: //models/umt5:encode against the official Wan `T5Encoder`
(wan/modules/t5.py, imported unmodified from a Wan2.1 checkout given by --t5_py; the project
stores no official code) on Debian's python3-torch, in the same run.

The model: umT5-XXL at full width (vocab 256384, dim 4096, ffn 10240, 64 heads) with --layers
of its 24 blocks, random weights with the official init scales stored in bf16 (as the official
checkpoint is), one prompt of --tokens tokens. Each measurement is a fresh process (so that its
peak resident memory is its own); runs are interleaved (ours, peer f32, peer bf16, ours, ...)
and the medians reported, since the machine is shared.

    bazel build -c opt //models/umt5:encode
    /usr/bin/python3 bench/peers/t5_bench.py --t5_py ~/Wan2.1/wan/modules/t5.py \\
        --encode bazel-bin/models/umt5/encode --work /tmp/t5bench [--layers 4 --tokens 512] \\
        [--ours_compute f32,bf16]

--ours_compute lists our numerics modes (encode --compute): f32 (the variant "ours") and bf16
(bf16 projection inputs, "ours_bf16"), each interleaved with the peers and compared with each.

--verify_fixtures DIR first checks the imported t5.py against shared/fixtures/umt5.
Modes used internally: --peer (one peer process), --make (writes the weights and the case).
"""

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FULL = dict(vocab=256384, dim=4096, dim_attn=4096, dim_ffn=10240, num_heads=64,
            num_buckets=32, shared_pos=False)


def import_official(t5_py, scratch):
    """wan/modules/t5.py as a module; its `from .tokenizers import ...` gets a stand-in (the
    benchmark starts from ids)."""
    pkg = tempfile.mkdtemp(prefix="wan_t5_", dir=scratch)
    os.makedirs(os.path.join(pkg, "wanpkg"))
    open(os.path.join(pkg, "wanpkg", "__init__.py"), "w").close()
    with open(os.path.join(pkg, "wanpkg", "tokenizers.py"), "w") as f:
        f.write("class HuggingfaceTokenizer:\n    pass\n")
    os.symlink(os.path.abspath(t5_py), os.path.join(pkg, "wanpkg", "t5.py"))
    sys.path.insert(0, pkg)
    spec = importlib.util.spec_from_file_location("wanpkg.t5", os.path.join(pkg, "wanpkg", "t5.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wanpkg.t5"] = mod
    spec.loader.exec_module(mod)
    return mod


# --- safetensors, streamed (the full-width file is GBs) ---------------------------------

_DT = {"BF16": (torch.bfloat16, 2), "F32": (torch.float32, 4), "I64": (torch.int64, 8)}


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def st_read(path, name, header=None):
    header, base = header or st_header(path)
    e = header[name]
    dtype, _ = _DT[e["dtype"]]
    b, end = e["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + b)
        buf = bytearray(f.read(end - b))
    return torch.frombuffer(buf, dtype=dtype).reshape(e["shape"])


def st_write(path, tensors, metadata=None):
    """tensors: list of (name, dtype name, shape, producer() -> contiguous tensor)."""
    header, offset = {}, 0
    for name, dt, shape, _ in tensors:
        n = math.prod(shape) * _DT[dt][1]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, dt, shape, make in tensors:
            t = make()
            assert t.dtype == _DT[dt][0] and list(t.shape) == list(shape), name
            f.write(t.contiguous().view(torch.uint8).numpy().tobytes())


def make_inputs(work, layers, tokens, seed=7):
    """Official-init random weights in bf16 (generated tensor by tensor) and one case."""
    g = torch.Generator().manual_seed(seed)
    c = FULL
    d, da, df, h = c["dim"], c["dim_attn"], c["dim_ffn"], c["num_heads"]

    def normal(shape, std):
        def make():
            if shape[0] > 65536:  # the embedding, in row chunks
                out = torch.empty(shape, dtype=torch.bfloat16)
                for r in range(0, shape[0], 32768):
                    rows = min(32768, shape[0] - r)
                    out[r:r + rows] = (torch.randn(rows, shape[1], generator=g) * std).bfloat16()
                return out
            return (torch.randn(*shape, generator=g) * std).bfloat16()
        return make

    def ones_ish(shape):
        return lambda: (1 + 0.1 * torch.randn(*shape, generator=g)).bfloat16()

    ts = [("token_embedding.weight", "BF16", (c["vocab"], d), normal((c["vocab"], d), 1.0))]
    for i in range(layers):
        p = f"blocks.{i}."
        ts += [
            (p + "norm1.weight", "BF16", (d,), ones_ish((d,))),
            (p + "attn.q.weight", "BF16", (da, d), normal((da, d), (d * da) ** -0.5)),
            (p + "attn.k.weight", "BF16", (da, d), normal((da, d), d ** -0.5)),
            (p + "attn.v.weight", "BF16", (da, d), normal((da, d), d ** -0.5)),
            (p + "attn.o.weight", "BF16", (d, da), normal((d, da), (h * da) ** -0.5)),
            (p + "norm2.weight", "BF16", (d,), ones_ish((d,))),
            (p + "ffn.gate.0.weight", "BF16", (df, d), normal((df, d), d ** -0.5)),
            (p + "ffn.fc1.weight", "BF16", (df, d), normal((df, d), d ** -0.5)),
            (p + "ffn.fc2.weight", "BF16", (d, df), normal((d, df), df ** -0.5)),
            (p + "pos_embedding.embedding.weight", "BF16", (32, h),
             normal((32, h), (2 * 32 * h) ** -0.5)),
        ]
    ts.append(("norm.weight", "BF16", (d,), ones_ish((d,))))
    st_write(os.path.join(work, "weights.safetensors"), ts)
    ids = torch.randint(3, c["vocab"], (1, tokens), generator=g)
    ids[0, -1] = 1  # </s>
    st_write(os.path.join(work, "case.safetensors"),
             [("ids", "I64", (1, tokens), lambda: ids),
              ("mask", "I64", (1, tokens), lambda: torch.ones(1, tokens, dtype=torch.int64))])


def cpu_seconds():
    """User + system CPU time of this process (all threads): on a shared machine the CPU time
    of a forward says more than its wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peer(args):
    """One official-encoder process: builds T5Encoder as _t5 does (f32, then .to(dtype)), loads
    the weights, runs the forward --repeat times; prints a JSON line."""
    torch.set_num_threads(args.threads)
    common.set_openblas_threads(args.threads)
    t5 = import_official(args.t5_py, args.work)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    path = os.path.join(args.work, "weights.safetensors")
    header = st_header(path)
    layers = 1 + max(int(k.split(".")[1]) for k in header[0] if k.startswith("blocks."))
    t0 = time.perf_counter()
    model = t5.T5Encoder(num_layers=layers, dropout=0.1, **FULL).to(dtype).eval()
    model.requires_grad_(False)
    state = model.state_dict()
    for name in state:
        state[name].copy_(st_read(path, name, header))
    load_s = time.perf_counter() - t0
    ids = st_read(os.path.join(args.work, "case.safetensors"), "ids")
    mask = st_read(os.path.join(args.work, "case.safetensors"), "mask")
    times, cpu_times = [], []
    with torch.no_grad():
        for _ in range(args.repeat):
            out = None
            c, t = cpu_seconds(), time.perf_counter()
            out = model(ids, mask)
            times.append(time.perf_counter() - t)
            cpu_times.append(cpu_seconds() - c)
    torch.save(out.float(), os.path.join(args.work, f"peer_{args.dtype}.pt"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    common.emit({"load_s": load_s, "forward_s": times, "forward_cpu_s": cpu_times,
                 "peak_rss_mb": rss,
                 "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "blas": common.openblas_info().get("openblas_core", "?")})


def verify(args):
    """The imported t5.py against the umT5 fixtures (official outputs)."""
    t5 = import_official(args.t5_py, args.work)
    d = args.verify_fixtures
    cfg = json.load(open(os.path.join(d, "tiny_a.config.json")))["T5Encoder"]
    model = t5.T5Encoder(**cfg).eval()
    w = common.read_safetensors(os.path.join(d, "tiny_a.weights.safetensors"))[0]
    model.load_state_dict(w, strict=True)
    worst = 0
    for c in ("case1", "case2", "case3", "case4"):
        t = common.read_safetensors(os.path.join(d, f"tiny_a.{c}.safetensors"))[0]
        with torch.no_grad():
            out = model(t["ids"], t["mask"])
        worst = max(worst, float((out - t["hidden"]).norm() / t["hidden"].norm()))
    print(f"verify: {args.t5_py} reproduces the umT5 fixtures, worst rel L2 {worst:.2e}",
          file=sys.stderr)
    assert worst < 1e-6, worst


def run_json(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    lines = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("{\"load_s\"")]
    return json.loads(lines[-1])


def read_hidden(path):
    return st_read(path, "hidden").float()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--t5_py", required=True, help="the official wan/modules/t5.py")
    ap.add_argument("--encode", default="bazel-bin/models/umt5/encode")
    ap.add_argument("--work", default="/tmp/t5bench")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3, help="processes per variant (interleaved)")
    ap.add_argument("--repeat", type=int, default=2, help="forwards per process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer_dtypes", default="f32,bf16")
    ap.add_argument("--ours_compute", default="f32", help="encode --compute modes: f32,bf16")
    ap.add_argument("--verify_fixtures", default="")
    ap.add_argument("--peer", action="store_true")
    ap.add_argument("--dtype", default="f32")
    args = ap.parse_args()
    if args.peer:
        return peer(args)
    os.makedirs(args.work, exist_ok=True)
    if args.verify_fixtures:
        verify(args)
    weights = os.path.join(args.work, "weights.safetensors")
    if not os.path.exists(weights):
        make_inputs(args.work, args.layers, args.tokens)
    ours_names = {c: "ours" if c == "f32" else f"ours_{c}" for c in args.ours_compute.split(",")}
    variants = {}
    for compute, name in ours_names.items():
        variants[name] = [args.encode, "--weights", weights, "--inputs",
                          os.path.join(args.work, "case.safetensors"), "--out",
                          os.path.join(args.work, f"{name}.safetensors"), "--threads",
                          str(args.threads), "--repeat", str(args.repeat), "--compute", compute]
    for dt in args.peer_dtypes.split(","):
        variants[f"peer_{dt}"] = [sys.executable, os.path.abspath(__file__), "--peer", "--dtype",
                                  dt, "--t5_py", args.t5_py, "--work", args.work, "--threads",
                                  str(args.threads), "--repeat", str(args.repeat)]
    results = {k: [] for k in variants}
    for r in range(args.runs):
        for name, cmd in variants.items():
            rec = run_json(cmd)
            rec["loadavg_1m"] = round(os.getloadavg()[0], 2)
            results[name].append(rec)
            print(f"round {r} {name}: forward {rec['forward_s']} s, CPU {rec['forward_cpu_s']} s, "
                  f"peak {rec['peak_rss_mb']:.0f} MB, load {rec['loadavg_1m']}",
                  file=sys.stderr, flush=True)
    summary = {"layers": args.layers, "tokens": args.tokens, "threads": args.threads,
               "runs": args.runs, "repeat": args.repeat, "machine": common.machine_info()}
    for name, recs in results.items():
        fw = [min(r["forward_s"][1:] or r["forward_s"]) for r in recs]  # warm forwards
        cpu = [min(r["forward_cpu_s"][1:] or r["forward_cpu_s"]) for r in recs]
        summary[name] = {"forward_median_s": statistics.median(fw), "forward_min_s": min(fw),
                         "forward_cpu_median_s": statistics.median(cpu),
                         "peak_rss_median_mb": statistics.median(r["peak_rss_mb"] for r in recs),
                         "load_median_s": statistics.median(r["load_s"] for r in recs)}
    # summary[ours][vs_peer_<dtype>]: ours over the peer (time, CPU time, memory) and the rel L2
    # of our output against the peer's.
    for name in ours_names.values():
        ours = read_hidden(os.path.join(args.work, f"{name}.safetensors"))
        for dt in args.peer_dtypes.split(","):
            ref = torch.load(os.path.join(args.work, f"peer_{dt}.pt"))[0]
            peer_summary, mine = summary[f"peer_{dt}"], summary[name]
            mine[f"vs_peer_{dt}"] = {
                "time_ratio": mine["forward_median_s"] / peer_summary["forward_median_s"],
                "cpu_time_ratio": (mine["forward_cpu_median_s"] /
                                   peer_summary["forward_cpu_median_s"]),
                "memory_ratio": mine["peak_rss_median_mb"] / peer_summary["peak_rss_median_mb"],
                "rel_l2": float((ours[0] - ref).norm() / ref.norm())}
    common.emit(summary)


if __name__ == "__main__":
    main()
