#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# GPU fast path, part 1 (see also test_gpu_data.sh): the ioctl ABI of
# include/kvfs/ioctl.h on a real mount.  Requests are issued with
# kvfs-test-gpuio (tests/gpu/gpuio.c: raw control over every field) against
# the fake GPU backend (tests/gpu/fake_plugin.c: "device memory" is a shared
# file whose path is the IPC handle).  Every error is checked for its errno,
# its detail code (KVFS_E_*), error_seg, the error field and bytes_done, and
# after every error the daemon must still serve a plain read and a QUERY.
# Then the daemon without a backend: gpu=off, gpu=auto (no GPU on CI; a real
# one is accepted too), a plugin path that does not exist, and gpu=bogus,
# refused at mount.  The gpu counters of .kvfs/stats must match what was done.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_gpu_fake
kv_need_py
kv_need_kv_data

# "Device allocations" are files; the fake IPC handle holds the path and is
# 64 bytes: keep the paths short.
DEV=$T/dev
if [ ${#DEV} -gt 44 ]; then kv_mktemp DEV /tmp; fi
mkdir -p "$DEV"
[ ${#DEV} -le 44 ] || fail "no short directory for the fake device files ($DEV)"

# ------------------------------------------------------------- helpers ----
declare -A ERRNO=([EINVAL]=22 [ENOTTY]=25 [EFAULT]=14 [ENODEV]=19 [EBADF]=9 [EIO]=5
                  [EISDIR]=21 [ENOSPC]=28)
# Expected gpu counters of the daemon mounted now (reset at every mount).
REQ=0 ERRS=0 RBYTES=0 WBYTES=0

# gio ARGS...: run kvfs-test-gpuio; sets GIO_RC and GIO_OUT.
gio() { GIO_RC=0; GIO_OUT=$("$GPUIO" "$@" 2>&1) || GIO_RC=$?; }

# op_of ARGS...: "read", "write" or "query" (the first non-option word).
op_of() {
    while [ $# -gt 0 ]; do
        case $1 in --*) shift 2 ;; *) printf '%s\n' "$1"; return ;; esac
    done
}

# gio_ok BYTES MSG ARGS...: the request succeeds with bytes_done = BYTES.
gio_ok() {
    local want=$1 msg=$2 op; shift 2
    op=$(op_of "$@")
    gio "$@"
    [ "$GIO_RC" -eq 0 ] || fail "$msg: kvfs-test-gpuio $* exited $GIO_RC: $GIO_OUT"
    assert_eq "$GIO_OUT" "ok bytes=$want" "$msg (kvfs-test-gpuio $*)"
    REQ=$((REQ + 1))
    if [ "$op" = read ]; then RBYTES=$((RBYTES + want)); else WBYTES=$((WBYTES + want)); fi
}

# gio_err ERRNO DETAIL SEG BYTES MSG ARGS...: the request fails with exactly
# this errno, detail, error_seg and bytes_done; error is -errno when the fast
# path answered (DETAIL != 0), untouched (0) when the request was refused
# before it (ENOTTY, a command of another size, EISDIR).  Then the daemon
# must still serve.
gio_err() {
    local e=$1 d=$2 s=$3 b=$4 msg=$5 want; shift 5
    gio "$@"
    [ "$GIO_RC" -eq 1 ] || fail "$msg: kvfs-test-gpuio $* exited $GIO_RC (expected 1, $e): $GIO_OUT"
    if [ "$d" = 0 ]; then
        want="err errno=$e detail=0 seg=0 bytes=0 error=0"
    else
        want="err errno=$e detail=$d seg=$s bytes=$b error=-${ERRNO[$e]}"
        REQ=$((REQ + 1)) ERRS=$((ERRS + 1))
    fi
    assert_eq "$GIO_OUT" "$want" "$msg (kvfs-test-gpuio $*)"
    serves
}

# qry_err ERRNO MSG ARGS...: a QUERY fails with ERRNO.
qry_err() {
    local e=$1 msg=$2; shift 2
    gio "$@"
    [ "$GIO_RC" -eq 1 ] || fail "$msg: kvfs-test-gpuio $* exited $GIO_RC: $GIO_OUT"
    assert_eq "$GIO_OUT" "err errno=$e" "$msg (kvfs-test-gpuio $*)"
    serves
}

# serves: the daemon is alive, a file reads back and QUERY answers.
serves() {
    kv_assert_alive
    cmp "$SRC/layer1.v.f16" "$MNT/ns/c/layer1.v.f16" || fail "a plain read after the error differs"
    local q
    q=$("$GPUIO" query "$MNT/ns/c/layer1.v.f16" 2>&1) || fail "QUERY after the error failed: $q"
    [[ $q == "ok abi=1 size=320 "* ]] || fail "QUERY after the error: $q"
}

# qfield OUT NAME: the value of NAME=... in a QUERY answer.
qfield() { sed -n "1s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# stat1 SERIES: one value of $MNT/.kvfs/stats, which is checked strictly too.
stat1() {
    local f out
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$MNT/.kvfs/stats" >"$f" || fail "cannot read $MNT/.kvfs/stats"
    out=$(py "$PROM" "$f" --get "$1" 2>&1) || fail "$MNT/.kvfs/stats: $out"
    printf '%s\n' "$out"
}

# expect_counters MSG: the gpu counters match REQ/ERRS/RBYTES/WBYTES.
expect_counters() {
    local f out
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$MNT/.kvfs/stats" >"$f" || fail "cannot read $MNT/.kvfs/stats"
    out=$(py "$PROM" "$f" --expect "kvfs_gpu_requests_total=$REQ" \
        --expect "kvfs_gpu_errors_total=$ERRS" --expect "kvfs_gpu_read_bytes_total=$RBYTES" \
        --expect "kvfs_gpu_written_bytes_total=$WBYTES" 2>&1) || fail "$1: $out"
}

# ioctl_magic FILE MAGIC NR SIZE: an ioctl of another magic (python); prints
# the errno name or "ok".
ioctl_magic() {
    py - "$@" <<'EOF'
import errno, fcntl, os, sys
path, magic, nr, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDONLY)
cmd = (3 << 30) | (size << 16) | (ord(magic) << 8) | nr
try:
    fcntl.ioctl(fd, cmd, bytearray(size), True)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF
}

version_hex() {
    local v
    v=$("$KVFS" -V | awk '{ print $2 }')
    IFS=. read -r a b c <<<"$v"
    printf '0x%06x\n' $(((a << 16) | (b << 8) | c))
}
VERSION=$(version_hex)

STORE=$T/store
MNT=$T/mnt
F=$MNT/ns/c/layer0.k.f16      # 131072 bytes
FS=131072
DIRP=$MNT/ns/c

# ===========================================================================
# 1. The fake backend: QUERY and every refusal of a GPU request.
# ===========================================================================
kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE,chunk=64K"
mkdir -p "$MNT/ns/c"
cp "$SRC"/layer* "$MNT/ns/c/"
head -c $((1 << 20)) /dev/urandom >"$DEV/a"          # a 1 MiB allocation
head -c 4096 /dev/urandom >"$DEV/small"               # a 4 KiB allocation
: >"$DEV/empty"

q=$("$GPUIO" query "$F") || fail "QUERY on a file: $q"
assert_eq "$(head -n1 <<<"$q")" \
    "ok abi=1 size=320 version=$VERSION backend=2 name=fake ndev=1 max_segs=160 chunk=65536" \
    "QUERY with the fake backend"
assert_eq "$(sed -n 2p <<<"$q")" "uuid=kvfs-fake-gpu-00" "device UUID of the fake backend"
assert_eq "$(wc -l <<<"$q")" 2 "lines of QUERY (one device)"
q2=$("$GPUIO" query "$DIRP") || fail "QUERY on a directory: $q2"
assert_eq "$q2" "$q" "QUERY on a directory"
q2=$("$GPUIO" query "$MNT") || fail "QUERY on the mount's root: $q2"
assert_eq "$q2" "$q" "QUERY on the root directory"
check '[ "$(stat1 kvfs_gpu_pinned_bytes)" -gt 0 ]' "kvfs_gpu_pinned_bytes is 0 with a running backend"
expect_counters "counters after QUERY only"

# a good request first: the rest are refusals of variants of it
gio_ok $FS "GPU_READ of a whole file" read "$F" "$DEV/a" 0:4096:$FS
cmp -n $FS -i 0:4096 "$SRC/layer0.k.f16" "$DEV/a" || fail "GPU_READ copied the wrong bytes"
cp "$DEV/a" "$T/a.ref"
pass "QUERY (file, directory, root) and one GPU_READ"

# --- commands the daemon does not know ------------------------------------
for nr in 0 4 9 255; do
    gio_err ENOTTY 0 0 0 "command number $nr (read-sized)" --cmd-nr $nr read "$F" "$DEV/a" 0:0:16
    gio_err ENOTTY 0 0 0 "command number $nr (write-sized)" --cmd-nr $nr write "$F" "$DEV/a" 0:0:16
    qry_err ENOTTY "QUERY-sized command number $nr" --cmd-nr $nr query "$F"
done
for m in k X f; do
    r=$(ioctl_magic "$F" $m 2 3968)
    assert_eq "$r" ENOTTY "ioctl of magic '$m' nr 2 on a file"
    serves
    r=$(ioctl_magic "$DIRP" $m 1 320)
    assert_eq "$r" ENOTTY "ioctl of magic '$m' nr 1 on a directory"
    serves
done
# the right numbers with another size
for sz in 0 8 128 3960 3976 8192; do
    gio_err EINVAL 0 0 0 "GPU_READ command of size $sz" --cmd-size $sz read "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 0 0 0 "GPU_WRITE command of size $sz" --cmd-size $sz write "$F" "$DEV/a" 0:0:16
done
r=$(ioctl_magic "$F" K 1 64)
assert_eq "$r" EINVAL "QUERY command of size 64"
serves
cmp "$SRC/layer0.k.f16" "$F" || fail "$F changed by refused commands"
cmp "$T/a.ref" "$DEV/a" || fail "the allocation changed by refused commands"
expect_counters "counters after commands refused before the fast path"
pass "unknown command numbers and magics: ENOTTY; known numbers of another size: EINVAL"

# --- header checks, in order: version, size, arguments ---------------------
qry_err EINVAL "QUERY with abi_version 2" --abi 2 query "$F"
qry_err EINVAL "QUERY with abi_version 0" --abi 0 query "$F"
qry_err EINVAL "QUERY with struct_size 319" --size 319 query "$F"
for op in read write; do
    gio_err EINVAL 1 0 0 "$op with abi_version 2" --abi 2 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 1 0 0 "$op with abi_version 0" --abi 0 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 1 0 0 "$op with abi_version 2 and a bad struct_size (version first)" \
        --abi 2 --size 1 $op "$F" "$DEV/a" 0:0:16
    for sz in 0 320 3967 3969 4096; do
        gio_err EINVAL 2 0 0 "$op with struct_size $sz" --size $sz $op "$F" "$DEV/a" 0:0:16
    done
    gio_err EINVAL 2 0 0 "$op with a bad struct_size and bad flags (size first)" \
        --size 8 --flags 1 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "$op with flags 1" --flags 1 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "$op with flags 0x80000000" --flags 0x80000000 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "$op with nseg 0" --nseg 0 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "$op with nseg 161" --nseg 161 $op "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "$op with nseg 0xffffffff" --nseg 0xffffffff $op "$F" "$DEV/a" 0:0:16
    for v in 0 3 7; do
        gio_err EINVAL 3 0 0 "$op with vendor $v" --vendor $v $op "$F" "$DEV/a" 0:0:16
    done
    # arguments before access: a read-only fd does not hide bad flags
    gio_err EINVAL 3 0 0 "$op with flags 1 on a fd without access" \
        --open "$([ $op = read ] && echo wo || echo ro)" --flags 1 $op "$F" "$DEV/a" 0:0:16
done
# nseg 160 (the maximum) is accepted: 160 segments of 16 bytes
segs=()
for ((i = 0; i < 160; i++)); do segs+=("$((i * 512)):$((i * 16)):16"); done
gio_ok $((160 * 16)) "GPU_READ of 160 segments" read "$F" "$DEV/a" "${segs[@]}"
py - "$SRC/layer0.k.f16" "$DEV/a" <<'EOF' || fail "GPU_READ of 160 segments copied the wrong bytes"
import sys
f = open(sys.argv[1], "rb").read(); d = open(sys.argv[2], "rb").read()
sys.exit(any(d[i * 16:i * 16 + 16] != f[i * 512:i * 512 + 16] for i in range(160)))
EOF
pass "abi_version (E_VERSION), struct_size (E_SIZE), flags/nseg/vendor (E_ARG), in that order"

# --- file ranges -------------------------------------------------------------
gio_ok 72 "GPU_READ that ends exactly at EOF" read "$F" "$DEV/a" $((FS - 72)):0:72
gio_ok 0 "GPU_READ of zero bytes at EOF" read "$F" "$DEV/a" $FS:0:0
gio_err EINVAL 4 0 0 "GPU_READ one byte beyond EOF" read "$F" "$DEV/a" 0:0:$((FS + 1))
gio_err EINVAL 4 0 0 "GPU_READ of zero bytes beyond EOF" read "$F" "$DEV/a" $((FS + 1)):0:0
gio_err EINVAL 4 1 0 "GPU_READ whose 2nd segment passes EOF" \
    read "$F" "$DEV/a" 0:0:100 $((FS - 1000)):200:1001
gio_err EINVAL 4 2 0 "GPU_READ whose 3rd segment passes EOF" \
    read "$F" "$DEV/a" 0:0:100 100:100:100 $FS:4096:1
gio_err EINVAL 4 1 0 "GPU_READ whose 2nd segment overflows (0xffffffffffffff00 + 0x200)" \
    read "$F" "$DEV/a" 0:0:100 0xffffffffffffff00:0:0x200
gio_err EINVAL 4 1 0 "GPU_READ whose 2nd segment overflows (-256 + 512)" \
    read "$F" "$DEV/a" 0:0:100 -256:0:512
gio_err EINVAL 4 0 0 "GPU_WRITE ending beyond 2^63" write "$F" "$DEV/a" 0x7fffffffffffff00:0:0x200
# Near the end of the largest file: memory for the chunks written, not for
# the offset (an ASan abort before the chunk map was sparse).
mkdir -p "$MNT/ns/sparse"
: >"$MNT/ns/sparse/far"
gio_ok 512 "GPU_WRITE ending at 2^63 - 256" write "$MNT/ns/sparse/far" "$DEV/a" 0x7ffffffffffffe00:0:0x100 0x7ffffffffffffd00:0x100:0x100
cmp <(dd if="$MNT/ns/sparse/far" bs=256 skip=$(((0x7ffffffffffffd00) / 256)) count=2 status=none) \
    <(tail -c +257 "$DEV/a" | head -c 256; head -c 256 "$DEV/a") || fail "bytes GPU_WRITE stored near 2^63 read back differently"
rm -r "$MNT/ns/sparse"
serves
gio_err EINVAL 4 1 0 "GPU_WRITE whose 2nd segment overflows" \
    write "$F" "$DEV/a" 0:0:100 -256:0:512
gio_err EFAULT 5 1 0 "GPU_READ whose 2nd segment's device range overflows" \
    read "$F" "$DEV/a" 0:0:100 0:-256:512
cmp "$SRC/layer0.k.f16" "$F" || fail "$F changed by refused GPU_WRITEs"
pass "file ranges beyond EOF or overflowing: E_FILE_RANGE with the right error_seg"

# --- device ranges: checked against the imported allocation -----------------
gio_ok 4096 "GPU_READ filling a 4 KiB allocation" read "$F" "$DEV/small" 0:0:4096
gio_err EFAULT 5 0 0 "GPU_READ one byte past a 4 KiB allocation" read "$F" "$DEV/small" 0:0:4097
gio_err EFAULT 5 0 0 "GPU_READ at dev_off 4096 of a 4 KiB allocation" read "$F" "$DEV/small" 0:4096:1
gio_err EFAULT 5 1 0 "GPU_READ whose 2nd segment passes the allocation" \
    read "$F" "$DEV/small" 0:0:100 0:4000:97
cp "$DEV/small" "$T/small.ref"
gio_err EFAULT 5 1 0 "GPU_WRITE whose 2nd segment passes the allocation" \
    write "$F" "$DEV/small" 0:0:100 1000:4000:97
cmp "$SRC/layer0.k.f16" "$F" || fail "a GPU_WRITE refused for its 2nd segment wrote its 1st"
cmp "$T/small.ref" "$DEV/small" || fail "a refused request changed the allocation"
pass "device ranges past the allocation: EFAULT/E_DEV_RANGE, nothing copied"

# --- access mode of the fd ---------------------------------------------------
gio_err EBADF 10 0 0 "GPU_WRITE on a read-only fd" --open ro write "$F" "$DEV/a" 0:0:16
gio_err EBADF 10 0 0 "GPU_READ on a write-only fd" --open wo read "$F" "$DEV/a" 0:0:16
# access is checked before the range
gio_err EBADF 10 0 0 "GPU_READ beyond EOF on a write-only fd" --open wo read "$F" "$DEV/a" 0:0:$((FS * 2))
gio_ok 16 "GPU_READ on a read-write fd" --open rw read "$F" "$DEV/a" 0:0:16
# the same bytes back: a write-only fd may GPU_WRITE
gio_ok 16 "GPU_WRITE on a write-only fd" --open wo write "$F" "$DEV/a" 0:0:16
cmp "$SRC/layer0.k.f16" "$F" || fail "$F differs after writing its own first 16 bytes back"
pass "GPU_WRITE on O_RDONLY, GPU_READ on O_WRONLY: EBADF/E_ACCESS"

# --- IPC handles, devices, vendors -------------------------------------------
INO=$(stat -c %i "$F")
log_before=$(wc -l <"${KV_LOG[$MNT]}")
"$GPUIO" read "$F" "$DEV/missing" 0:0:16 >"$T/out" 2>&1 &
cpid=$!
rc=0; wait $cpid || rc=$?
assert_eq "$rc:$(cat "$T/out")" "1:err errno=EBADF detail=9 seg=0 bytes=0 error=-9" \
    "GPU_READ with a handle naming a missing file"
REQ=$((REQ + 1)) ERRS=$((ERRS + 1))
serves
line=$(tail -n +"$((log_before + 1))" "${KV_LOG[$MNT]}" | grep -F "$DEV/missing" || true)
[ -n "$line" ] || fail "no log line names the handle $DEV/missing: $(tail -n 5 "${KV_LOG[$MNT]}")"
grep -qE "inode $INO\b" <<<"$line" || fail "the log line does not name inode $INO: $line"
grep -qE "pid $cpid\b" <<<"$line" || fail "the log line does not name the client's pid $cpid: $line"
grep -qi "no such file" <<<"$line" || fail "the log line does not give the reason: $line"
gio_err EBADF 9 0 0 "GPU_WRITE with a handle naming a missing file" write "$F" "$DEV/missing" 0:0:16
gio_err EBADF 9 0 0 "GPU_READ with a handle naming an empty allocation" read "$F" "$DEV/empty" 0:0:16
gio_err EBADF 9 0 0 "GPU_READ with a handle naming a directory" read "$F" "$DEV" 0:0:16
gio_err ENODEV 8 0 0 "GPU_READ with another device UUID" --uuid kvfs-fake-gpu-01 read "$F" "$DEV/a" 0:0:16
gio_err ENODEV 8 0 0 "GPU_WRITE with another device UUID" --uuid 0123456789abcdef write "$F" "$DEV/a" 0:0:16
gio_err ENODEV 7 0 0 "GPU_READ of HIP memory from a CUDA backend" --vendor 1 read "$F" "$DEV/a" 0:0:16
gio_err ENODEV 7 0 0 "GPU_WRITE of HIP memory from a CUDA backend" --vendor 1 write "$F" "$DEV/a" 0:0:16
# vendor before device before handle
gio_err ENODEV 7 0 0 "vendor checked before the device" --vendor 1 --uuid x read "$F" "$DEV/missing" 0:0:16
gio_err ENODEV 8 0 0 "device checked before the handle" --uuid x read "$F" "$DEV/missing" 0:0:16
cmp "$SRC/layer0.k.f16" "$F" || fail "$F changed by refused GPU_WRITEs"
pass "missing handle: EBADF/E_HANDLE, logged with inode and pid; wrong UUID: E_DEVICE; HIP: E_VENDOR"

# --- directories and control files ------------------------------------------
gio_err EISDIR 0 0 0 "GPU_READ on a directory" read "$DIRP" "$DEV/a" 0:0:16
gio_err EISDIR 0 0 0 "GPU_WRITE on a directory" --open ro write "$DIRP" "$DEV/a" 0:0:16
gio_err EISDIR 0 0 0 "GPU_READ on the root" read "$MNT" "$DEV/a" 0:0:16
for c in .kvfs/stats .kvfs/config .kvfs; do
    gio_err ENOTTY 0 0 0 "GPU_READ on $c" read "$MNT/$c" "$DEV/a" 0:0:16
    qry_err ENOTTY "QUERY on $c" query "$MNT/$c"
done
gio_err ENOTTY 0 0 0 "GPU_WRITE on .kvfs/evict" --open wo write "$MNT/.kvfs/evict" "$DEV/a" 0:0:16
r=$(ioctl_magic "$MNT/.kvfs/stats" K 1 320)
assert_eq "$r" ENOTTY "a well-formed QUERY on .kvfs/stats"
pass "GPU requests on directories: EISDIR; any ioctl on .kvfs: ENOTTY"

expect_counters "gpu counters after part 1"
f=$(mktemp "$T/stats.XXXXXX"); cat "$MNT/.kvfs/stats" >"$f"
py "$PROM" "$f" >/dev/null || fail ".kvfs/stats is not valid Prometheus text"
check '[ "$(stat1 kvfs_gpu_ipc_opens_total)" -ge 2 ]' "kvfs_gpu_ipc_opens_total < 2 after two allocations were used"
for ((i = 0; i < 50; i++)); do
    [ "$(stat1 kvfs_gpu_mappings)" = 0 ] && break
    sleep 0.1
done
assert_eq "$(stat1 kvfs_gpu_mappings)" 0 "kvfs_gpu_mappings 5 s after the last client exited"
log "requests $REQ, errors $ERRS, read $RBYTES, written $WBYTES"
kv_umount "$MNT"
pass "gpu counters in .kvfs/stats match the $REQ requests"

# ===========================================================================
# 2. No backend: gpu=off, gpu=auto, gpu=/nonexistent.so
# ===========================================================================
# no_backend WHAT: the mounted daemon has no GPU backend.
no_backend() {
    local what=$1 op
    REQ=0 ERRS=0 RBYTES=0 WBYTES=0
    q=$("$GPUIO" query "$F") || fail "$what: QUERY on a file: $q"
    assert_eq "$q" "ok abi=1 size=320 version=$VERSION backend=0 name=none ndev=0 max_segs=160 chunk=65536" \
        "$what: QUERY"
    q=$("$GPUIO" query "$DIRP") || fail "$what: QUERY on a directory: $q"
    assert_eq "$(qfield "$q" backend):$(qfield "$q" name)" "0:none" "$what: QUERY on a directory"
    for op in read write; do
        gio_err ENODEV 6 0 0 "$what: $op" $op "$F" "$DEV/a" 0:0:16
        gio_err ENODEV 6 0 0 "$what: $op with another UUID" --uuid x $op "$F" "$DEV/a" 0:0:16
        gio_err ENODEV 6 0 0 "$what: $op with vendor HIP" --vendor 1 $op "$F" "$DEV/a" 0:0:16
        gio_err ENODEV 6 0 0 "$what: $op with a missing handle" $op "$F" "$DEV/missing" 0:0:16
        # argument errors are found before the backend is asked
        gio_err EINVAL 1 0 0 "$what: $op with abi_version 2" --abi 2 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 2 0 0 "$what: $op with struct_size 3967" --size 3967 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 3 0 0 "$what: $op with flags 1" --flags 1 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 3 0 0 "$what: $op with nseg 0" --nseg 0 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 3 0 0 "$what: $op with nseg 161" --nseg 161 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 3 0 0 "$what: $op with vendor 7" --vendor 7 $op "$F" "$DEV/a" 0:0:16
        gio_err EINVAL 4 1 0 "$what: $op with an overflowing 2nd segment" \
            $op "$F" "$DEV/a" 0:0:16 0xffffffffffffff00:0:0x200
        gio_err EFAULT 5 1 0 "$what: $op with an overflowing device range" \
            $op "$F" "$DEV/a" 0:0:16 0:-256:512
        gio_err EINVAL 0 0 0 "$what: $op command of size 128" --cmd-size 128 $op "$F" "$DEV/a" 0:0:16
        gio_err ENOTTY 0 0 0 "$what: command number 9" --cmd-nr 9 $op "$F" "$DEV/a" 0:0:16
    done
    gio_err EINVAL 4 0 0 "$what: GPU_READ beyond EOF" read "$F" "$DEV/a" 0:0:$((FS + 1))
    gio_err EBADF 10 0 0 "$what: GPU_WRITE on a read-only fd" --open ro write "$F" "$DEV/a" 0:0:16
    gio_err EBADF 10 0 0 "$what: GPU_READ on a write-only fd" --open wo read "$F" "$DEV/a" 0:0:16
    gio_err EISDIR 0 0 0 "$what: GPU_READ on a directory" read "$DIRP" "$DEV/a" 0:0:16
    gio_err ENOTTY 0 0 0 "$what: GPU_READ on .kvfs/stats" read "$MNT/.kvfs/stats" "$DEV/a" 0:0:16
    cmp "$SRC/layer0.k.f16" "$F" || fail "$what: $F changed"
    expect_counters "$what: gpu counters"
    assert_eq "$(stat1 kvfs_gpu_mappings)" 0 "$what: kvfs_gpu_mappings"
    assert_eq "$(stat1 kvfs_gpu_ipc_opens_total)" 0 "$what: kvfs_gpu_ipc_opens_total"
    assert_eq "$(stat1 kvfs_gpu_pinned_bytes)" 0 "$what: kvfs_gpu_pinned_bytes"
}

kv_mount "$STORE" "$MNT" "gpu=off"
grep -qx "gpu=off" "$MNT/.kvfs/config" || fail ".kvfs/config lacks gpu=off: $(cat "$MNT/.kvfs/config")"
cmp "$SRC/layer0.k.f16" "$F" || fail "$F differs after a remount"
no_backend "gpu=off"
kv_umount "$MNT"
pass "gpu=off: QUERY says none, GPU requests ENODEV/E_NO_BACKEND, argument errors still EINVAL"

# gpu=auto loads the vendors' runtimes when they are installed: leaks of
# theirs (libamdhip64 leaks when hipInit finds no device) are not the daemon's
# and must not fail a LeakSanitizer build at unmount.
printf '%s\n' leak:libamdhip64 leak:libhsa-runtime64 leak:libcuda leak:libcudart >"$T/lsan.supp"
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp" kv_mount "$STORE" "$MNT"
grep -qx "gpu=auto" "$MNT/.kvfs/config" || fail ".kvfs/config lacks gpu=auto: $(cat "$MNT/.kvfs/config")"
q=$("$GPUIO" query "$F") || fail "gpu=auto: QUERY: $q"
backend=$(qfield "$q" backend)
if [ "$backend" = 0 ]; then
    no_backend "gpu=auto"
    grep -qiE "no GPU backend.*gpu=auto" "${KV_LOG[$MNT]}" ||
        fail "gpu=auto without a GPU: the log does not say so"
    pass "gpu=auto without a GPU: as gpu=off"
else
    # a machine with a real GPU: the fake handle and UUID are not its own
    name=$(qfield "$q" name) ndev=$(qfield "$q" ndev)
    check '[ "$ndev" -ge 1 ] && [ "$ndev" -le 16 ]' "gpu=auto: ndev=$ndev with backend $backend"
    case $backend:$name in
    2:cuda) d=8 ;;   # CUDA handle kind, unknown UUID
    1:hip) d=7 ;;    # a CUDA handle to a HIP backend
    *) fail "gpu=auto: unexpected backend $backend name $name" ;;
    esac
    gio_err ENODEV $d 0 0 "gpu=auto ($name): GPU_READ of fake memory" read "$F" "$DEV/a" 0:0:16
    gio_err EINVAL 3 0 0 "gpu=auto ($name): flags 1" --flags 1 read "$F" "$DEV/a" 0:0:16
    pass "gpu=auto found a real $name backend with $ndev device(s); fake memory refused"
fi
kv_umount "$MNT"

kv_mount "$STORE" "$MNT" "gpu=/nonexistent.so"
grep -qx "gpu=/nonexistent.so" "$MNT/.kvfs/config" || fail ".kvfs/config lacks gpu=/nonexistent.so"
no_backend "gpu=/nonexistent.so"
grep -qF "/nonexistent.so" <(grep -v '^+ ' "${KV_LOG[$MNT]}") ||
    fail "gpu=/nonexistent.so: the log does not name the plugin it could not load"
kv_umount "$MNT"
pass "gpu=/nonexistent.so mounts, runs no backend and logs why"

for bad in bogus /no/suffix lib.so /x.so.1 ""; do
    kv_try "$STORE" "$MNT" -o "gpu=$bad"
    check '[ "$KV_TRY_RC" -ne 0 ]' "kvfs -o gpu=$bad exited 0"
    grep -qF "gpu=$bad: expected auto, cuda, hip, off or the absolute path" <<<"$KV_TRY_OUT" ||
        fail "kvfs -o gpu=$bad: no clear message: $KV_TRY_OUT"
done
# the store is fine afterwards
kv_mount "$STORE" "$MNT" "gpu=off"
cmp "$SRC/layer0.k.f16" "$F" || fail "$F differs after the refused mounts"
kv_umount "$MNT"
pass "gpu=bogus (and other malformed values) refused at mount with a clear message"
