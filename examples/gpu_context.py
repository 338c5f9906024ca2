#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Store a whole KV context from GPU tensors on a kvfs mount and load it back
into GPU tensors, the way an engine would, with kvfs_client and PyTorch.

    gpu_context.py MOUNT [NAMESPACE [LAYERS]]

Each layer's K and V tensors go to one file
MOUNT/NAMESPACE/<prefix-hash>/layer_NN.kv (K, then V) through the daemon's
GPU_WRITE, written into a temporary directory that is renamed into place.
They are then loaded with GPU_READ into views at non-zero offsets of one
large buffer, as a paged KV pool would hold them, and compared on the GPU.
A context already cached is only loaded and compared. Exits 77 (skip)
without torch, without CUDA, or when the daemon has no GPU backend.
"""
import hashlib
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "python"))
import kvfs_client as kv  # noqa: E402

TOKENS, KV_HEADS, HEAD_DIM = 256, 8, 128
LOAD_GAP = 4096  # bytes between tensors in the load buffer, and before the first


def skip(why):
    print("gpu_context: %s: skipped" % why)
    sys.exit(77)


def layer_tensor(torch, layer, kv_index, device):
    """Layer's K (0) or V (1): reproducible values, so a context cached by
    an earlier run can be compared too (small integers are exact in fp16)."""
    n = TOKENS * KV_HEADS * HEAD_DIM
    x = torch.arange(n, device=device, dtype=torch.int32)
    x = (x * 31 + layer * 7 + kv_index * 101) % 2039
    return x.to(torch.float16).view(TOKENS, KV_HEADS, HEAD_DIM)


def prefix_hash(layers):
    """The engine's name for the context: a hash of the prompt's token ids
    (made up here) and of what shapes the cache."""
    tokens = [(i * 2654435761) % 128256 for i in range(TOKENS)]
    key = repr((tokens, KV_HEADS, HEAD_DIM, layers, "float16")).encode()
    return hashlib.sha256(key).hexdigest()[:16]


def store(torch, ctx, layers, device):
    tmp = os.path.join(os.path.dirname(ctx), ".tmp-%s-%d" % (os.path.basename(ctx), os.getpid()))
    os.mkdir(tmp)
    try:
        for layer in range(layers):
            k = layer_tensor(torch, layer, 0, device)
            v = layer_tensor(torch, layer, 1, device)
            path = os.path.join(tmp, "layer_%02d.kv" % layer)
            kv.save_tensors(path, [(k, 0), (v, k.nbytes)])
        os.rename(tmp, ctx)  # publish: the whole context appears at once
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_and_compare(torch, ctx, layers, device):
    nbytes = TOKENS * KV_HEADS * HEAD_DIM * 2
    stride = nbytes + LOAD_GAP
    pool = torch.zeros(LOAD_GAP + 2 * layers * stride, dtype=torch.uint8, device=device)

    def view(layer, kv_index):
        off = LOAD_GAP + (2 * layer + kv_index) * stride
        return pool[off:off + nbytes].view(torch.float16).view(TOKENS, KV_HEADS, HEAD_DIM)

    for layer in range(layers):
        k, v = view(layer, 0), view(layer, 1)
        path = os.path.join(ctx, "layer_%02d.kv" % layer)
        kv.load_tensors(path, [(k, 0), (v, nbytes)])
    for layer in range(layers):
        for kv_index in (0, 1):
            if not torch.equal(view(layer, kv_index), layer_tensor(torch, layer, kv_index, device)):
                sys.exit("gpu_context: layer %d %s differs after the round trip"
                         % (layer, "KV"[kv_index]))
    if pool[:LOAD_GAP].any():
        sys.exit("gpu_context: bytes before the first tensor were written")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: gpu_context.py MOUNT [NAMESPACE [LAYERS]]")
    mount = sys.argv[1]
    namespace = sys.argv[2] if len(sys.argv) > 2 else "gpu-example"
    layers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    try:
        import torch
    except ImportError:
        skip("PyTorch is not installed")
    if not torch.cuda.is_available():
        skip("no CUDA device")
    q = kv.query(mount)
    if q.backend == kv.GPU_NONE:
        skip("the kvfs daemon has no GPU backend (%s)" % q.backend_name)

    device = torch.device("cuda", torch.cuda.current_device())
    ctx = os.path.join(mount, namespace, prefix_hash(layers))
    os.makedirs(os.path.dirname(ctx), exist_ok=True)
    if os.path.isdir(ctx):
        print("%s: already cached" % ctx)
    else:
        store(torch, ctx, layers, device)
        print("%s: stored %d layers from the GPU" % (ctx, layers))
    load_and_compare(torch, ctx, layers, device)
    print("%s: loaded %d layers into the GPU at offsets of one buffer; equal" % (ctx, layers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
