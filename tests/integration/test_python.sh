#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Python package (src/python, docs/python.md): installed with pip into a
# fresh venv, offline (--no-build-isolation: the system's setuptools), then
# used on a mount with the fake GPU backend, in an interpreter without
# torch: query, python3 -m kvfs, bytes and numpy arrays published by rename
# and read back, the stats, the old module name, and a GPU call on a host
# object failing with a TypeError that says what to use instead.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_gpu_fake
PY=/usr/bin/python3
[ -x $PY ] || fail "no $PY (scripts/deps.sh installs python3)"
$PY -c 'import venv, ensurepip, setuptools, numpy' 2>/dev/null ||
    fail "$PY lacks venv, ensurepip, setuptools or numpy (scripts/deps.sh installs python3-venv, python3-setuptools, python3-numpy)"

VENV=$T/venv
$PY -m venv --system-site-packages "$VENV" || fail "python3 -m venv failed"
# From a copy: an in-tree build leaves build/ and *.egg-info in the sources.
cp -r "$KV_REPO/src/python" "$T/pysrc"
rm -rf "$T/pysrc/build" "$T"/pysrc/*.egg-info
out=$(cd "$T" && "$VENV/bin/pip" install --no-build-isolation --no-index --no-cache-dir \
    "$T/pysrc" 2>&1) || fail "pip install ./src/python failed: $out"
pass "pip install --no-build-isolation ./src/python into a venv"
# The installed copy, not the source tree, is what is imported.
where=$(cd "$T" && "$VENV/bin/python" -c 'import kvfs; print(kvfs.__file__)')
case $where in "$VENV"/*) ;; *) fail "kvfs imported from $where, not the venv" ;; esac
check '! (cd "$T" && "$VENV/bin/python" -c "import torch") 2>/dev/null' \
    "torch is importable in the test venv: the no-torch checks would prove nothing"

MNT=$T/mnt
kv_mount "$T/store" "$MNT" "gpu=$GPU_FAKE,codec=lz4"
mkdir -p "$MNT/ns/ctx"

out=$(cd "$T" && "$VENV/bin/python" -m kvfs "$MNT") || fail "python -m kvfs failed: $out"
echo "$out" | grep -q "backend fake" || fail "python -m kvfs: $out"
pass "python -m kvfs MNT: $(echo "$out" | head -1)"

(cd "$T" && "$VENV/bin/python" - "$MNT" <<'PY') || fail "the Python checks failed (above)"
import os, sys
import numpy as np
import kvfs, kvfs_client

mnt = sys.argv[1]
ctx = os.path.join(mnt, "ns", "ctx")
q = kvfs.query(mnt)
assert q.abi_version == kvfs.ABI_VERSION and q.backend_name == "fake" and q.chunk_size > 0, q

data = os.urandom(3 << 20) + b"tail"
kvfs.write_bytes(os.path.join(ctx, "layer_00"), data)
kvfs.write_bytes(os.path.join(ctx, "layer_01"), b"x" * 100, durable=True)
assert kvfs.read_bytes(os.path.join(ctx, "layer_00")) == data
assert sorted(os.listdir(ctx)) == ["layer_00", "layer_01"], os.listdir(ctx)  # no temp names left

k = (np.arange(4 * 8 * 128, dtype=np.float32) / 7).astype(np.float16).reshape(4, 8, 128)
kvfs.save_array(os.path.join(ctx, "k.npy"), k)
for mmap in (False, True):
    back = kvfs.load_array(os.path.join(ctx, "k.npy"), mmap=mmap)
    assert back.dtype == k.dtype and back.shape == k.shape and np.array_equal(back, k)
try:
    kvfs.save_array(os.path.join(ctx, "bad.npy"), np.array([object()]))
    raise AssertionError("an object array was saved")
except TypeError:
    pass
assert "bad.npy" not in " ".join(os.listdir(ctx))

st = kvfs.stats(mnt)
assert st["kvfs_files"] >= 3 and st["kvfs_stored_bytes"] > 0, st

for call in (lambda: kvfs.save_tensor(k, os.path.join(ctx, "t")),
             lambda: kvfs.load_tensors(os.path.join(ctx, "layer_00"), [(bytearray(8), 0)])):
    try:
        call()
        raise AssertionError("a GPU call took a host object")
    except TypeError as e:
        assert "torch tensors on a GPU" in str(e) and "save_array" in str(e), e
assert not os.path.exists(os.path.join(ctx, "t")), "a refused save created its file"

assert kvfs_client.query is kvfs.query and kvfs_client.KvfsError is kvfs.KvfsError
try:
    kvfs.query("/")
    raise AssertionError("query outside a mount succeeded")
except kvfs.KvfsError as e:
    assert "not a file on a kvfs mount" in str(e), e
print("python checks passed")
PY
pass "query, bytes and numpy arrays published by rename, stats, the old name, clear errors without torch"
kv_umount "$MNT"
