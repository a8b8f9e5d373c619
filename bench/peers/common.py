"""Shared helpers for the PyTorch peer benchmarks (sdpo bench/peers).

Nothing here depends on numpy or on the `safetensors` package: the CPU peer runs on
Debian's python3-torch (torch 1.13) where neither is guaranteed, and the GPU peer runs on
torch 2.x.
"""

import ctypes
import json
import os
import platform
import statistics
import struct
import subprocess
import time

import torch

# ---------------------------------------------------------------------------------------
# safetensors: [u64 LE header length N][N bytes JSON header][packed little-endian data]
# ---------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path):
    """Returns (dict name -> CPU tensor (owning a copy), metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dtype = _ST_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = info["shape"]
        buf = bytearray(raw[base + begin : base + end])
        if len(buf) == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype).reshape(shape).clone()
        out[name] = t
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes dict name -> CPU tensor (in its own dtype) and optional string metadata."""
    names = {dtype: name for name, dtype in _ST_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text.encode() + b"".join(chunks))


# ---------------------------------------------------------------------------------------
# Which BLAS did this process load?
# ---------------------------------------------------------------------------------------


def loaded_blas_libraries():
    """Paths of BLAS/LAPACK-like shared objects mapped into this process."""
    keys = ("blas", "lapack", "mkl", "blis", "nvpl")
    seen = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                p = parts[-1]
                base = os.path.basename(p).lower()
                if any(k in base for k in keys) and p not in seen:
                    seen.append(p)
    except OSError:
        pass
    return seen


def _touch_blas():
    # Make sure torch has called into its BLAS at least once so the library is mapped.
    a = torch.ones(8, 8)
    (a @ a).sum().item()


def openblas_info():
    """Returns dict with the OpenBLAS core name / config / threads, if OpenBLAS is loaded."""
    _touch_blas()
    info = {"blas_libs": loaded_blas_libraries()}
    ob = [p for p in info["blas_libs"] if "openblas" in os.path.basename(p).lower()]
    info["blas"] = ob[0] if ob else (info["blas_libs"][0] if info["blas_libs"] else "unknown")
    if ob:
        try:
            lib = ctypes.CDLL(ob[0])
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            info["openblas_core"] = lib.openblas_get_corename().decode()
            info["openblas_config"] = lib.openblas_get_config().decode().strip()
            info["openblas_threads"] = int(lib.openblas_get_num_threads())
        except (OSError, AttributeError) as e:  # pragma: no cover
            info["openblas_error"] = str(e)
    return info


def set_openblas_threads(n):
    for p in loaded_blas_libraries():
        if "openblas" in os.path.basename(p).lower():
            try:
                ctypes.CDLL(p).openblas_set_num_threads(int(n))
            except (OSError, AttributeError):
                pass
            return


def env_info():
    def ev(k):
        return os.environ.get(k, "unset")

    return {
        "variant": ev("SDPO_BENCH_VARIANT"),
        "round": ev("SDPO_BENCH_ROUND"),
        "OPENBLAS_CORETYPE": ev("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": ev("OPENBLAS_L2_SIZE"),
        "OPENBLAS_NUM_THREADS": ev("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": ev("OMP_NUM_THREADS"),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # noise indicator (2-core machine)
    }


def machine_info():
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------


def time_fn(fn, repeats, warmup=1, sync=None):
    """Runs fn warmup times, then repeats times; returns list of seconds."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return ts


def summarize(ts):
    return {"median_s": statistics.median(ts), "min_s": min(ts), "repeats": len(ts)}


def emit(rec):
    print(json.dumps(rec, sort_keys=False), flush=True)
