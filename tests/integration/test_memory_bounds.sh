#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The daemon's memory stays bounded whatever users do (issue 12, defects 3
# and 6): one byte written at a huge sparse offset costs the chunks written,
# not the offset; thousands of open files each holding a few unwritten
# bytes share the wbuf= budget; memory comes back once they are closed.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

M=$T/mnt
# ASan keeps freed memory in its quarantine (256 MiB by default): a small
# one, so that memory given back shows.
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:quarantine_size_mb=16
kv_mount "$T/store" "$M" ram=16M,wbuf=32M,workers=2
pid=${KV_PID[$M]}
status_mib() { awk -v k="$1:" '$1 == k {print int($2/1024)}' "/proc/$pid/status"; }
# ASan's shadow memory and redzones: its build gets twice the room.
scale=1
if ldd "$KVFS" | grep -q libasan; then scale=2; fi
base=$(status_mib VmRSS)

# Defect 3: one byte at 2^45, 2^62 and the last byte a file can have.
python3 - "$M/sparse" <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
for i, off in enumerate((1 << 45, 1 << 62, (1 << 63) - 2)):
    assert os.pwrite(fd, bytes([65 + i]), off) == 1
try:
    os.pwrite(fd, b"x", (1 << 63) - 1)
    sys.exit("a write ending past 2^63 - 1 succeeded")
except OSError as e:      # the kernel refuses it first (EINVAL) or kvfs does
    assert e.errno in (errno.EFBIG, errno.EINVAL), e
os.close(fd)
PY
rss=$(status_mib VmRSS)
log "RSS ${base} MiB before, ${rss} MiB after bytes at 2^45, 2^62 and 2^63-2"
check '[ "$rss" -le $((base + 64 * scale)) ]' "a sparse write cost $((rss - base)) MiB"
assert_eq "$(stat -c %s "$M/sparse")" $(((1 << 63) - 1)) "size of the sparse file"
kv_remount "$T/store" "$M" ram=16M,wbuf=32M,workers=2
pid=${KV_PID[$M]}
python3 - "$M/sparse" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for i, off in enumerate((1 << 45, 1 << 62, (1 << 63) - 2)):
    assert os.pread(fd, 1, off) == bytes([65 + i]), off
    assert os.pread(fd, 4096, off - 4096) == bytes(4096), off
os.close(fd)
PY
pass "bytes at 2^45, 2^62 and 2^63-2 in ${rss} MiB, read back after a remount; refused past 2^63-1"

# Defect 6: 3,000 open files with 100 unwritten bytes each.
base=$(status_mib VmRSS)
python3 - "$M/many" "$pid" <<'PY'
import os, sys
d, pid = sys.argv[1], sys.argv[2]
os.makedirs(d)
fds = []
for i in range(3000):
    fd = os.open(os.path.join(d, "f%04d" % i), os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, (b"%04d" % i) * 25)
    fds.append(fd)
for i, fd in enumerate(fds):          # more bytes into chunks stored early
    os.write(fd, (b"%04d" % i) * 25)
with open("/proc/%s/status" % pid) as f:
    hwm = [int(l.split()[1]) // 1024 for l in f if l.startswith("VmHWM:")][0]
print(hwm)
for fd in fds:
    os.close(fd)
PY
peak=$(status_mib VmHWM)
# ram + wbuf + chunk slack per FUSE thread + slab rounding + threads.
bound=$(((base + 16 + 32 + 16 * 2 + 32 + 18 * 4) * scale))
log "3000 open files: peak RSS ${peak} MiB, bound ${bound} MiB"
check '[ "$peak" -le "$bound" ]' "3000 open files took the daemon to ${peak} MiB (bound ${bound} MiB)"
for i in 0 1234 2999; do
    want=$(printf '%04d' "$i")
    want=$(printf "$want%.0s" $(seq 50))
    assert_eq "$(cat "$M/many/f$(printf %04d "$i")")" "$want" "content of file $i"
done
rss=$(status_mib VmRSS)
log "RSS ${rss} MiB after the files were closed"
check '[ "$rss" -le $(((base + 16 + 64) * scale)) ]' "memory not given back after close: ${rss} MiB"
pass "3000 open files within wbuf (peak ${peak} MiB), ${rss} MiB once closed"
