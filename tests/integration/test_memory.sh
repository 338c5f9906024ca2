#!/usr/bin/env bash
# The daemon's peak RSS stays within the bound of docs/memory.md while a
# 4 GiB file is written and read back.
set -euo pipefail
: "${KVFS:?}"
work=$(mktemp -d /var/tmp/kvfs-test_memory.XXXXXX)
mnt=$work/mnt
cleanup() { mountpoint -q "$mnt" && fusermount3 -u "$mnt"; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$mnt"
ram_mib=64 workers=2 chunk_mib=1
ASAN_OPTIONS=${ASAN_OPTIONS:-}:quarantine_size_mb=16 "$KVFS" -f -o ram=${ram_mib}M,workers=$workers "$work/store" "$mnt" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { cat "$work/log"; exit 1; }
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status"; }
start=$(hwm)
# Compressible data keeps the disk use small; the buffers are chunk-sized anyway.
dd if=/dev/zero of="$mnt/big" bs=1M count=4096 status=none
size=$(stat -c %s "$mnt/big")
[ "$size" -eq $((4096 << 20)) ] || { echo "size $size"; exit 1; }
echo 3 >/proc/sys/vm/drop_caches
cmp -n $((4096 << 20)) "$mnt/big" /dev/zero
threads=$((16 + workers))
bound=$((16 + ram_mib + (4 + 2 * workers) * chunk_mib + 32 + threads * 7 / 2))
# AddressSanitizer adds shadow memory and allocator redzones (about as much
# again); its build checks the same bound scaled by 2.
if ldd "$KVFS" | grep -q libasan; then bound=$((bound * 2)); fi
peak=$(hwm)
echo "peak RSS ${peak} MiB (start ${start} MiB), bound ${bound} MiB"
[ "$peak" -le "$bound" ] || { echo "FAIL: daemon RSS ${peak} MiB exceeds ${bound} MiB"; exit 1; }
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
[ "$peak" -le "$bound" ] || { echo "FAIL: daemon RSS ${peak} MiB exceeds ${bound} MiB"; exit 1; }
fusermount3 -u "$mnt"
wait "$pid"
