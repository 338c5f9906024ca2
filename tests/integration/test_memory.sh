#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The daemon's peak RSS stays within the bound of docs/memory.md while a
# 4 GiB file is written and read back.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

mnt=$T/mnt
ram_mib=64 workers=2 chunk_mib=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:quarantine_size_mb=16
kv_mount "$T/store" "$mnt" "ram=${ram_mib}M,workers=$workers"
pid=${KV_PID[$mnt]}
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status"; }
start=$(hwm)
# Compressible data keeps the disk use small; the buffers are chunk-sized anyway.
dd if=/dev/zero of="$mnt/big" bs=1M count=4096 status=none
size=$(stat -c %s "$mnt/big")
[ "$size" -eq $((4096 << 20)) ] || fail "size $size"
echo 3 >/proc/sys/vm/drop_caches
cmp -n $((4096 << 20)) "$mnt/big" /dev/zero
threads=$((16 + workers))
bound=$((16 + ram_mib + (4 + 2 * workers) * chunk_mib + 32 + threads * 7 / 2))
# AddressSanitizer adds shadow memory and allocator redzones (about as much
# again); its build checks the same bound scaled by 2.
if ldd "$KVFS" | grep -q libasan; then bound=$((bound * 2)); fi
peak=$(hwm)
echo "peak RSS ${peak} MiB (start ${start} MiB), bound ${bound} MiB"
[ "$peak" -le "$bound" ] || fail "daemon RSS ${peak} MiB exceeds ${bound} MiB"
# Many small files: each enters the DRAM tier, which must be charged what it
# holds, not the few bytes of data.
python3 - "$mnt/small" <<'PY'
import os, sys
os.makedirs(sys.argv[1])
block = os.urandom(4096)
for i in range(3000):
    with open(os.path.join(sys.argv[1], "f%05d" % i), "wb") as f:
        f.write(block)
PY
peak=$(hwm)
echo "peak RSS ${peak} MiB after 3000 small files, bound ${bound} MiB"
[ "$peak" -le "$bound" ] || fail "daemon RSS ${peak} MiB exceeds ${bound} MiB"
kv_umount "$mnt"
