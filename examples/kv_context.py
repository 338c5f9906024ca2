#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Store and load a KV-cache context on a kvfs mount the way an engine would.

A context is a directory <mount>/<namespace>/<context>/ with one file per
layer tensor. It is written into a temporary directory first and renamed
into place, so readers never see half a context.

    kv_context.py save MOUNT NAMESPACE CONTEXT FILE...   # e.g. layer*.f16 meta.json
    kv_context.py load MOUNT NAMESPACE CONTEXT OUTDIR
    kv_context.py ls   MOUNT NAMESPACE
"""
import os
import shutil
import sys
import uuid


def save(mount, namespace, context, files):
    ns = os.path.join(mount, namespace)
    os.makedirs(ns, exist_ok=True)
    final = os.path.join(ns, context)
    if os.path.exists(final):
        print(f"{final}: already cached")
        return 0
    tmp = os.path.join(ns, f".tmp-{context}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        for f in files:
            with open(f, "rb") as src, open(os.path.join(tmp, os.path.basename(f)), "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        os.setxattr(tmp, "user.kv.layers", str(len(files)).encode())
        os.rename(tmp, final)  # publish: the whole context appears at once
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{final}: stored {len(files)} files")
    return 0


def load(mount, namespace, context, outdir):
    ctx = os.path.join(mount, namespace, context)
    if not os.path.isdir(ctx):
        print(f"{ctx}: not cached (recompute the prefill)", file=sys.stderr)
        return 1
    os.makedirs(outdir, exist_ok=True)
    total = 0
    for name in sorted(os.listdir(ctx)):
        with open(os.path.join(ctx, name), "rb") as f:
            data = f.read()
        with open(os.path.join(outdir, name), "wb") as out:
            out.write(data)
        total += len(data)
    print(f"{ctx}: loaded {total} bytes")
    return 0


def ls(mount, namespace):
    ns = os.path.join(mount, namespace)
    for name in sorted(os.listdir(ns)):
        path = os.path.join(ns, name)
        logical = stored = 0
        for f in os.listdir(path):
            st = os.stat(os.path.join(path, f))
            logical += st.st_size
            stored += st.st_blocks * 512
        print(f"{name}\t{logical}\t{stored}\t{logical / stored if stored else 0:.2f}x")
    return 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "save":
        return save(argv[2], argv[3], argv[4], argv[5:])
    if len(argv) == 6 and argv[1] == "load":
        return load(*argv[2:])
    if len(argv) == 4 and argv[1] == "ls":
        return ls(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
