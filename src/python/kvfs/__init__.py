# SPDX-License-Identifier: Apache-2.0
"""kvfs: the Python client of kvfs, the filesystem for LLM KV caches.

Without a GPU or torch:

    import kvfs
    kvfs.query("/mnt/kv")                         # what the daemon is and can do
    kvfs.write_bytes("/mnt/kv/ns/ctx/layer_00", data)   # published by rename
    kvfs.save_array("/mnt/kv/ns/ctx/k.npy", k)    # numpy arrays, .npy format
    kvfs.stats("/mnt/kv")["kvfs_stored_bytes"]

With torch tensors on a GPU, the daemon copies file bytes straight to or
from device memory (the GPU fast path, docs/ioctl.md):

    kvfs.save_tensor(k, "/mnt/kv/ns/ctx/layer_00")
    kvfs.load_tensor("/mnt/kv/ns/ctx/layer_00", k_out)
    kvfs.load_tensors(path, [(k_out, 0), (v_out, k.nbytes)])

The GPU calls take torch tensors; anything else raises a TypeError that
says so (no torch needed to get it). Failures of the daemon raise
KvfsError, an OSError with the kvfs detail. docs/python.md has the rest.
"""

from ._client import (
    ABI_VERSION,
    DETAILS,
    GPU_CUDA,
    GPU_HIP,
    GPU_NONE,
    KvfsError,
    Query,
    detail_name,
    gpu_readv,
    gpu_writev,
    load_new,
    load_tensor,
    load_tensors,
    query,
    save_tensor,
    save_tensors,
)
from .files import load_array, read_bytes, save_array, stats, write_bytes

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "DETAILS", "GPU_CUDA", "GPU_HIP", "GPU_NONE", "KvfsError", "Query",
    "detail_name", "gpu_readv", "gpu_writev", "load_array", "load_new", "load_tensor",
    "load_tensors", "query", "read_bytes", "save_array", "save_tensor", "save_tensors",
    "stats", "write_bytes", "__version__",
]
