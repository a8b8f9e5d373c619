"""Detects the CUDA toolkit (CUDA_PATH, default /usr/local/cuda) and exposes it as @local_cuda.

When nvcc is found, @local_cuda//:defs.bzl has CUDA_ENABLED = True and BUILD targets for the
runtime, cuBLAS(Lt), cuDNN and NCCL; otherwise CUDA_ENABLED = False and the BUILD is empty, so
the rest of the tree builds CPU-only.
"""

def _cuda_configure_impl(ctx):
    cuda_path = ctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    nvcc = ctx.path(cuda_path + "/bin/nvcc")
    if not nvcc.exists:
        ctx.file("BUILD", "# CUDA not found at %s: CPU-only build.\n" % cuda_path)
        ctx.file("defs.bzl", "CUDA_ENABLED = False\nNVCC = \"\"\n")
        return
    ctx.symlink(cuda_path + "/include", "include")
    ctx.symlink(cuda_path + "/lib64", "lib64")
    ctx.symlink(cuda_path + "/bin", "bin")
    ctx.file("defs.bzl", "CUDA_ENABLED = True\nNVCC = \"%s\"\n" % str(nvcc))
    ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

exports_files(["bin/nvcc"])

cc_library(
    name = "cuda_headers",
    hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.inl"]),
    includes = ["include"],
)

# Linked dynamically: the GPU machine provides these libraries (LD_LIBRARY_PATH).
cc_library(
    name = "cudart",
    linkopts = ["-L%s/lib64", "-Wl,-rpath,%s/lib64", "-lcudart"],
    deps = [":cuda_headers"],
)

cc_library(
    name = "cublas",
    linkopts = ["-L%s/lib64", "-lcublasLt", "-lcublas"],
    deps = [":cudart"],
)

cc_library(
    name = "cudnn",
    linkopts = ["-L%s/lib64", "-lcudnn"],
    deps = [":cudart"],
)

cc_library(
    name = "nccl",
    linkopts = ["-L%s/lib64", "-lnccl"],
    deps = [":cudart"],
)
""".replace("%s", cuda_path))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    local = True,
    environ = ["CUDA_PATH"],
)
