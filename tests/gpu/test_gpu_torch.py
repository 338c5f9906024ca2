#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The GPU fast path from PyTorch, through src/python/kvfs_client.py, on a
mounted kvfs: real KV tensors (tests/data/kv) written with write() and with
GPU_WRITE, loaded with GPU_READ into views at non-zero offsets of one GPU
buffer and compared on the GPU; two client processes at once; a client that
exits with its allocation imported by the daemon.

    test_gpu_torch.py MOUNT KV_DATA_DIR

Exits 77 without torch, without CUDA, or when the daemon has no GPU backend.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "python"))
import kvfs_client as kv  # noqa: E402

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def stat(mount, name):
    with open(os.path.join(mount, ".kvfs", "stats")) as f:
        for line in f:
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def kv_tensors(torch, data_dir):
    """Every KV file of the data set as a bf16/fp16 tensor on the GPU."""
    out = []
    for name in sorted(os.listdir(data_dir)):
        if not name.endswith((".bf16", ".f16")):
            continue
        dtype = torch.bfloat16 if name.endswith(".bf16") else torch.float16
        with open(os.path.join(data_dir, name), "rb") as f:
            raw = bytearray(f.read())
        t = torch.frombuffer(raw, dtype=dtype).clone().cuda()
        out.append((name, t))
    return out


def child(mount, path, rounds):
    """A second client: loads path repeatedly into its own buffer."""
    import torch
    want = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.uint8).cuda()
    buf = torch.zeros(want.numel() + 8192, dtype=torch.uint8, device="cuda")
    for i in range(rounds):
        off = (i * 513) % 8192
        view = buf[off:off + want.numel()]
        view.zero_()
        torch.cuda.synchronize()
        kv.load_tensor(path, view)
        if not torch.equal(view, want):
            print("FAIL: child load %d differs" % i)
            return 1
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        return child(None, sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) == 3 and sys.argv[1] == "leaver":
        import torch
        t = torch.empty(1 << 20, dtype=torch.uint8, device="cuda")
        kv.load_tensor(sys.argv[2], t)
        os._exit(0)  # no cleanup: the daemon still holds the import
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    mount, data_dir = sys.argv[1], sys.argv[2]
    try:
        import torch
    except ImportError:
        print("SKIP: no torch")
        return 77
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 77
    q = kv.query(mount)
    if q.backend == 0:
        print("SKIP: the daemon runs no GPU backend")
        return 77

    ctx = os.path.join(mount, "torchtest", "ctx-%d" % os.getpid())
    os.makedirs(ctx)
    tensors = kv_tensors(torch, data_dir)
    total = sum(t.numel() * t.element_size() for _, t in tensors)

    # 1. Half the layers with write(), half with GPU_WRITE from the GPU.
    for i, (name, t) in enumerate(tensors):
        path = os.path.join(ctx, name)
        if i % 2:
            with open(path, "wb") as f:
                f.write(t.cpu().view(torch.uint8).numpy().tobytes())
        else:
            kv.save_tensor(t, path)
        check(os.path.getsize(path) == t.numel() * t.element_size(), "size of " + name)

    # 2. Load every layer into one buffer at odd offsets, compare on the GPU.
    pool = torch.zeros(total + 4096 * (len(tensors) + 1), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    off = 4096 + 2  # odd for the fast path, even for a bf16 view
    views = []
    for name, t in tensors:
        n = t.numel() * t.element_size()
        views.append((name, t, pool[off:off + n]))
        off += n + 4094
    for name, t, v in views:
        kv.load_tensor(os.path.join(ctx, name), v)
        check(torch.equal(v.view(t.dtype), t), "GPU_READ of %s equals the tensor" % name)

    # 3. One file holding the whole context, loaded with one vector request.
    whole = os.path.join(ctx, "context.kv")
    pairs, foff = [], 0
    for _, t in tensors:
        pairs.append((t, foff))
        foff += t.numel() * t.element_size()
    kv.save_tensors(whole, pairs)
    outs = [torch.empty_like(t) for _, t in tensors]
    kv.load_tensors(whole, [(o, p[1]) for o, p in zip(outs, pairs)])
    for (name, t), o in zip(tensors, outs):
        check(torch.equal(o, t), "vector GPU_READ of %s" % name)

    # 4. Two client processes at once, plus this one.
    me = os.path.abspath(__file__)
    files = [os.path.join(ctx, tensors[0][0]), whole]
    procs = [subprocess.Popen([sys.executable, me, "child", f, "20"]) for f in files]
    for _ in range(10):
        kv.load_tensor(whole, pool[:foff])
    torch.cuda.synchronize()
    check(torch.equal(pool[:foff], torch.cat([t.view(torch.uint8) for _, t in tensors])),
          "load while other clients load")
    for p in procs:
        check(p.wait() == 0, "child client")

    # 5. A client that exits with an import cached: the daemon drops it
    # (the children's imports went the same way).
    def settle(target=None):
        v = None
        for _ in range(60):
            v = stat(mount, "kvfs_gpu_mappings")
            if target is None or v <= target:
                time.sleep(0.2)
                w = stat(mount, "kvfs_gpu_mappings")
                if w == v and (target is None or v <= target):
                    return v
            time.sleep(0.1)
        return v
    time.sleep(1.5)
    held = settle()
    opens = stat(mount, "kvfs_gpu_ipc_opens_total")
    check(subprocess.call([sys.executable, me, "leaver", whole]) == 0, "leaver")
    check(stat(mount, "kvfs_gpu_ipc_opens_total") > opens, "the leaver's import was counted")
    after = settle(held)
    print("imports held by this process: %s; after the leaver exited: %s" % (held, after))
    check(after is not None and after <= held, "the exited client's import was closed")
    kv.load_tensor(whole, pool[:foff])
    torch.cuda.synchronize()
    check(torch.equal(pool[:foff], torch.cat([t.view(torch.uint8) for _, t in tensors])),
          "load after a client exited")

    # 6. Expandable segments are refused with a clear message.
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    r = subprocess.run([sys.executable, "-c",
                        "import sys, torch; sys.path.insert(0, %r); import kvfs_client as kv\n"
                        "t = torch.ones(1 << 20, dtype=torch.uint8, device='cuda')\n"
                        "try:\n    kv.save_tensor(t, %r)\nexcept kv.KvfsError as e:\n"
                        "    print('refused:', e); sys.exit(3)\n" %
                        (os.path.dirname(kv.__file__), os.path.join(ctx, "exp.kv"))],
                       env=env, capture_output=True, text=True)
    check(r.returncode == 3 and "expandable" in r.stdout, "expandable segments refused: %r" % (r.stdout + r.stderr))

    if failures:
        print("FAILED: %d check(s)" % failures)
        return 1
    print("PASS: PyTorch through kvfs_client (%d tensors, %d bytes)" % (len(tensors), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
