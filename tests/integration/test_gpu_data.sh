#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016,SC2034  # check() evals its condition string (and reads its variables) later
# GPU fast path, part 2 (see also test_gpu_ioctl.sh): data through the fake
# GPU backend (tests/gpu/fake_plugin.c: "device memory" is a shared file
# whose path is the IPC handle), issued with kvfs-test-gpuio.
#  - for codec none, lz4 and zstd (a fresh store each, chunks of 64K, 1M,
#    256K): GPU_READ of real KV data (a 20 MiB file spanning many chunks and
#    the read-ahead window) into the device at unaligned offsets with several
#    segments (halves swapped, across chunk boundaries, zero length);
#    GPU_WRITE into new and existing files (several segments, one beyond EOF
#    leaving a hole of zeros, pages the kernel had cached); a GPU_READ right
#    after a GPU_WRITE and of data a plain writer has not flushed; all of it
#    again after a remount (cold reads from the segments);
#  - four clients at once (two on one file), two sharing one allocation,
#    and GPU_WRITEs racing O_DIRECT readers;
#  - the mapping cache: one import per allocation, kvfs_gpu_mappings back to
#    0 once clients exit (also clients killed mid-request), the gpu counters
#    of .kvfs/stats exact; an unlinked but open file;
#  - copy failures (KVFS_FAKE_GPU_FAIL_COPY=1): EIO/E_COPY, nothing changed;
#  - a capacity with every context pinned: GPU_WRITE gets ENOSPC/E_IO;
#  - a single-threaded daemon (-s): GPU_WRITEs racing buffered readers of
#    the same file must not hang it (a watchdog aborts the connection).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_gpu_fake
command -v setfattr >/dev/null || fail "setfattr is not installed"
kv_need_py
kv_need_kv_data
KiB=1024 MiB=1048576

# The fake IPC handle is the path of the "allocation", at most 64 bytes.
DEV=$T/dev
if [ ${#DEV} -gt 44 ]; then kv_mktemp DEV /tmp; fi
mkdir -p "$DEV"
[ ${#DEV} -le 44 ] || fail "no short directory for the fake device files ($DEV)"

# ------------------------------------------------------------- helpers ----
declare -A ERRNO=([EINVAL]=22 [EFAULT]=14 [ENODEV]=19 [EBADF]=9 [EIO]=5 [ENOSPC]=28)
REQ=0 ERRS=0 RBYTES=0 WBYTES=0     # expected gpu counters of the mounted daemon
reset_counters() { REQ=0 ERRS=0 RBYTES=0 WBYTES=0; }

op_of() {
    while [ $# -gt 0 ]; do
        case $1 in --*) shift 2 ;; *) printf '%s\n' "$1"; return ;; esac
    done
}
# count_ok OP BYTES: a successful request, for the counters.
count_ok() {
    REQ=$((REQ + 1))
    if [ "$1" = read ]; then RBYTES=$((RBYTES + $2)); else WBYTES=$((WBYTES + $2)); fi
}

gio() { GIO_RC=0; GIO_OUT=$("$GPUIO" "$@" 2>&1) || GIO_RC=$?; }

# gio_ok BYTES MSG ARGS...: kvfs-test-gpuio ARGS succeeds with bytes_done = BYTES.
gio_ok() {
    local want=$1 msg=$2; shift 2
    gio "$@"
    [ "$GIO_RC" -eq 0 ] || fail "$msg: kvfs-test-gpuio $* exited $GIO_RC: $GIO_OUT"
    assert_eq "$GIO_OUT" "ok bytes=$want" "$msg (kvfs-test-gpuio $*)"
    count_ok "$(op_of "$@")" "$want"
}

# gio_err ERRNO DETAIL SEG BYTES MSG ARGS...: the request fails exactly so.
gio_err() {
    local e=$1 d=$2 s=$3 b=$4 msg=$5; shift 5
    gio "$@"
    [ "$GIO_RC" -eq 1 ] || fail "$msg: kvfs-test-gpuio $* exited $GIO_RC (expected 1, $e): $GIO_OUT"
    assert_eq "$GIO_OUT" "err errno=$e detail=$d seg=$s bytes=$b error=-${ERRNO[$e]}" \
        "$msg (kvfs-test-gpuio $*)"
    REQ=$((REQ + 1)) ERRS=$((ERRS + 1))
    kv_assert_alive
}

# segsum SEG...: the sum of the lengths.
segsum() {
    local s n=0
    for s in "$@"; do n=$((n + ${s##*:})); done
    printf '%s\n' "$n"
}

# put SRC SOFF DST DOFF LEN: copy bytes like a segment does (DST not truncated).
put() {
    [ "$5" -gt 0 ] || return 0
    dd if="$1" of="$3" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes \
        skip="$2" seek="$4" count="$5" conv=notrunc status=none
}
# expect_read FILE IMAGE SEG...: apply GPU_READ segments of FILE to IMAGE.
expect_read() {
    local f=$1 img=$2 s fo doff len; shift 2
    for s in "$@"; do
        IFS=: read -r fo doff len <<<"$s"
        put "$f" "$fo" "$img" "$doff" "$len"
    done
}
# expect_write ALLOC FILE SEG...: apply GPU_WRITE segments of ALLOC to FILE.
expect_write() {
    local a=$1 f=$2 s fo doff len; shift 2
    for s in "$@"; do
        IFS=: read -r fo doff len <<<"$s"
        if [ "$len" -gt 0 ] && [ "$(stat -c %s "$f")" -lt $((fo + len)) ]; then
            truncate -s $((fo + len)) "$f"
        fi
        put "$a" "$doff" "$f" "$fo" "$len"
    done
}
# mkdev NAME SIZE: a new "allocation" of random bytes (and its copy NAME.ref in $T).
mkdev() {
    head -c "$2" /dev/urandom >"$DEV/$1"
    cp "$DEV/$1" "$T/$1.ref"
}

stats_file() {
    local f
    f=$(mktemp "$T/stats.XXXXXX")
    cat "$MNT/.kvfs/stats" >"$f" || fail "cannot read $MNT/.kvfs/stats"
    py "$PROM" "$f" >/dev/null 2>"$f.err" || fail ".kvfs/stats is not valid Prometheus text: $(cat "$f.err")"
    printf '%s\n' "$f"
}
stat1() {
    local out
    out=$(py "$PROM" "$(stats_file)" --get "$1" 2>&1) || fail "$MNT/.kvfs/stats: $out"
    printf '%s\n' "$out"
}
expect_counters() {
    local out
    out=$(py "$PROM" "$(stats_file)" --expect "kvfs_gpu_requests_total=$REQ" \
        --expect "kvfs_gpu_errors_total=$ERRS" --expect "kvfs_gpu_read_bytes_total=$RBYTES" \
        --expect "kvfs_gpu_written_bytes_total=$WBYTES" 2>&1) || fail "$1: $out"
}
# wait_unmapped MSG: kvfs_gpu_mappings is 0 within 5 s; prints the seconds taken.
wait_unmapped() {
    local i m
    for ((i = 0; i < 50; i++)); do
        m=$(stat1 kvfs_gpu_mappings)
        [ "$m" = 0 ] && { printf '%s.%s\n' $((i / 10)) $((i % 10)); return 0; }
        sleep 0.1
    done
    fail "$1: kvfs_gpu_mappings still $m 5 s after the last client exited"
}

# The 20 MiB (+ a tail) file: the real KV tensors over and over, in a rotating
# order, with a tag in the first 8 bytes of every 4 KiB so that no two blocks
# are alike (a block copied to the wrong place cannot go unnoticed).
BIGS=$((20 * MiB + 12345))
py - "$SRC" "$T/big" "$BIGS" <<'EOF'
import os, struct, sys
src, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
blobs = [open(os.path.join(src, f), "rb").read() for f in sorted(os.listdir(src)) if f.startswith("layer")]
buf, r = bytearray(), 0
while len(buf) < size:
    for i in range(len(blobs)):
        buf += blobs[(i + r) % len(blobs)]
    r += 1
del buf[size:]
for off in range(0, size, 4096):
    buf[off:off + 8] = struct.pack("<Q", 0x6b7666730000000 + off // 4096)
open(out, "wb").write(buf)
EOF
assert_eq "$(stat -c %s "$T/big")" "$BIGS" "size of the generated KV file"

# ===========================================================================
# 1. Data, for each codec.
# ===========================================================================
# data_round CODEC CHUNK TAG
data_round() {
    local codec=$1 chunk=$2 tag=$3 CH H OFF A HS L1 n t0 pids i rc
    local -a segs
    CH=$(($2 * KiB))
    STORE=$T/store-$tag MNT=$T/mnt-$tag
    kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE,codec=$codec,chunk=${chunk}K"
    reset_counters
    mkdir -p "$MNT/ns/c" "$MNT/ns/w"
    cp "$SRC"/layer* "$MNT/ns/c/"
    cp "$T/big" "$MNT/ns/c/big"
    cmp "$T/big" "$MNT/ns/c/big" || fail "$tag: cp of the 20 MiB file"

    # --- GPU_READ of the big file: halves swapped at an unaligned point, at
    # an odd device offset; a zero-length segment; a short one across a
    # chunk boundary; one of a whole chunk at the end of the device
    mkdev "$tag-r" $((BIGS + 3 * MiB))
    H=$((BIGS / 2 + 777)) OFF=4097
    segs=("$H:$OFF:$((BIGS - H))" "$((H + 5)):$((OFF + BIGS - H)):0" "0:$((OFF + BIGS - H)):$H"
          "$((3 * CH - 1000)):$((OFF + BIGS + 100)):2000"
          "$((2 * CH)):$((BIGS + 3 * MiB - CH)):$CH")
    gio_ok "$(segsum "${segs[@]}")" "$tag: GPU_READ of the 20 MiB file, halves swapped" \
        read "$MNT/ns/c/big" "$DEV/$tag-r" "${segs[@]}"
    cp "$T/$tag-r.ref" "$T/exp"
    expect_read "$T/big" "$T/exp" "${segs[@]}"
    cmp "$T/exp" "$DEV/$tag-r" || fail "$tag: the device bytes after GPU_READ of the big file differ"
    pass "$tag: GPU_READ of 20 MiB in 5 segments (swapped halves, chunk-crossing, zero-length)"

    # --- each KV file into one allocation, one request each
    mkdev "$tag-s" $((MiB + 4096))
    cp "$T/$tag-s.ref" "$T/exp"
    i=0
    for f in "$SRC"/layer*; do
        gio_ok 131072 "$tag: GPU_READ of $(basename "$f")" \
            read "$MNT/ns/c/$(basename "$f")" "$DEV/$tag-s" "0:$((i * 131072 + 333)):131072"
        put "$f" 0 "$T/exp" $((i * 131072 + 333)) 131072
        i=$((i + 1))
    done
    cmp "$T/exp" "$DEV/$tag-s" || fail "$tag: the KV files read into one allocation differ"
    pass "$tag: $i KV files into one allocation at unaligned offsets"

    # --- GPU_WRITE into a new file: first a segment beyond EOF (a hole of
    # two chunks and more before it), then the start of the file across
    # staging buffers and chunks, then a zero-length one
    mkdev "$tag-w" $((12 * MiB))
    A=$((5 * MiB + 4321)) HS=$((5 * MiB + 4321 + 2 * CH + 999)) L1=$((MiB + 555))
    segs=("$HS:$((3 * MiB + 17)):$L1" "0:100:$A" "$A:0:0")
    gio_ok "$(segsum "${segs[@]}")" "$tag: GPU_WRITE of a new file with a hole" \
        write "$MNT/ns/w/out" "$DEV/$tag-w" "${segs[@]}"
    : >"$T/out.exp"
    expect_write "$T/$tag-w.ref" "$T/out.exp" "${segs[@]}"
    assert_eq "$(stat -c %s "$MNT/ns/w/out")" $((HS + L1)) "$tag: size after GPU_WRITE"
    cmp "$T/out.exp" "$MNT/ns/w/out" || fail "$tag: the file written by GPU_WRITE differs"
    cmp -n $((HS - A)) /dev/zero <(tail -c +$((A + 1)) "$MNT/ns/w/out") ||
        fail "$tag: the hole left by GPU_WRITE is not zeros"
    cmp "$T/$tag-w.ref" "$DEV/$tag-w" || fail "$tag: GPU_WRITE changed the allocation"
    # right after: back to the device with GPU_READ (in reverse halves)
    mkdev "$tag-v" $((HS + L1 + 8192))
    n=$((HS + L1)) H=$(((HS + L1) / 3))
    segs=("$H:8192:$((n - H))" "0:$((8192 + n - H)):$H")
    gio_ok "$n" "$tag: GPU_READ right after GPU_WRITE" read "$MNT/ns/w/out" "$DEV/$tag-v" "${segs[@]}"
    cp "$T/$tag-v.ref" "$T/exp"
    expect_read "$T/out.exp" "$T/exp" "${segs[@]}"
    cmp "$T/exp" "$DEV/$tag-v" || fail "$tag: GPU_READ right after GPU_WRITE differs"
    pass "$tag: GPU_WRITE of a new file (3 segments, hole of zeros), read back by cat and GPU_READ"

    # --- GPU_WRITE into an existing file whose pages the kernel caches: a
    # patch inside, one that extends it, one starting exactly at EOF
    local K=$MNT/ns/c/layer1.k.f16
    cat "$K" >/dev/null
    cp "$SRC/layer1.k.f16" "$T/k.exp"
    segs=("1000:555:5000" "130000:9000:3000" "133000:70000:$((CH + 10))" "65530:20000:20")
    gio_ok "$(segsum "${segs[@]}")" "$tag: GPU_WRITE into an existing, cached file" \
        write "$K" "$DEV/$tag-w" "${segs[@]}"
    expect_write "$T/$tag-w.ref" "$T/k.exp" "${segs[@]}"
    assert_eq "$(stat -c %s "$K")" "$(stat -c %s "$T/k.exp")" "$tag: size after GPU_WRITE into an existing file"
    cmp "$T/k.exp" "$K" || fail "$tag: an existing file after GPU_WRITE differs (stale cached pages?)"
    pass "$tag: GPU_WRITE into an existing file: patches, extension, no stale cache"

    # --- a plain writer holds a file open with data it has not flushed
    local U=$MNT/ns/c/open
    exec 3>"$U"
    cat "$SRC/layer0.v.f16" >&3
    head -c 1000 "$SRC/meta.json" >&3
    cat "$SRC/layer0.v.f16" <(head -c 1000 "$SRC/meta.json") >"$T/u.exp"
    n=$(stat -c %s "$T/u.exp")
    mkdev "$tag-u" $((n + 100))
    gio read "$U" "$DEV/$tag-u" "0:100:$n"
    exec 3>&-
    if [ "$GIO_RC" -ne 0 ] || [ "$GIO_OUT" != "ok bytes=$n" ]; then
        fail "$tag: GPU_READ of $n bytes a plain writer holds unflushed: $GIO_OUT"
    fi
    count_ok read "$n"
    cmp -n "$n" -i 0:100 "$T/u.exp" "$DEV/$tag-u" || fail "$tag: GPU_READ of unflushed data differs"
    cmp "$T/u.exp" "$U" || fail "$tag: the plainly written file differs"
    pass "$tag: GPU_READ sees the bytes of a writer that still holds the file open"

    wait_unmapped "$tag" >/dev/null
    expect_counters "$tag: gpu counters before the remount"

    # --- a remount: everything durable; cold GPU_READs from the segments
    kv_remount "$STORE" "$MNT" "gpu=$GPU_FAKE,codec=$codec,chunk=${chunk}K"
    reset_counters
    cmp "$T/big" "$MNT/ns/c/big" || fail "$tag: big differs after the remount"
    cmp "$T/out.exp" "$MNT/ns/w/out" || fail "$tag: the GPU_WRITE file differs after the remount"
    cmp "$T/k.exp" "$K" || fail "$tag: the GPU_WRITE-patched file differs after the remount"
    cmp "$T/u.exp" "$U" || fail "$tag: the plainly written file differs after the remount"
    kv_remount "$STORE" "$MNT" "gpu=$GPU_FAKE,codec=$codec,chunk=${chunk}K"   # nothing cached
    # four quarters in reverse order
    mkdev "$tag-c" $((BIGS + 1000))
    local q=$((BIGS / 4))
    segs=("$((3 * q)):1000:$((BIGS - 3 * q))" "$((2 * q)):$((1000 + BIGS - 3 * q)):$q"
          "$q:$((1000 + BIGS - 2 * q)):$q" "0:$((1000 + BIGS - q)):$q")
    gio_ok "$BIGS" "$tag: cold GPU_READ of the big file after a remount" \
        read "$MNT/ns/c/big" "$DEV/$tag-c" "${segs[@]}"
    cp "$T/$tag-c.ref" "$T/exp"
    expect_read "$T/big" "$T/exp" "${segs[@]}"
    cmp "$T/exp" "$DEV/$tag-c" || fail "$tag: cold GPU_READ after the remount differs"
    mkdev "$tag-o" $((HS + L1))
    gio_ok $((HS + L1)) "$tag: cold GPU_READ of the GPU_WRITE file" \
        read "$MNT/ns/w/out" "$DEV/$tag-o" "0:0:$((HS + L1))"
    cmp "$T/out.exp" "$DEV/$tag-o" || fail "$tag: cold GPU_READ of the GPU_WRITE file differs"
    pass "$tag: all durable after a remount; cold GPU_READs exact"

    # --- concurrency: four clients at once, two of them on the same file
    mkdev "$tag-p1" "$BIGS"; mkdev "$tag-p2" $((BIGS + 512))
    mkdev "$tag-p3" $((HS + L1)); mkdev "$tag-p4" $((BIGS - BIGS / 2 + 64))
    "$GPUIO" read "$MNT/ns/c/big" "$DEV/$tag-p1" "0:0:$BIGS" >"$T/p1" 2>&1 & pids=($!)
    "$GPUIO" read "$MNT/ns/c/big" "$DEV/$tag-p2" "0:512:$BIGS" >"$T/p2" 2>&1 & pids+=($!)
    "$GPUIO" read "$MNT/ns/w/out" "$DEV/$tag-p3" "0:0:$((HS + L1))" >"$T/p3" 2>&1 & pids+=($!)
    "$GPUIO" read "$MNT/ns/c/big" "$DEV/$tag-p4" "$((BIGS / 2)):64:$((BIGS - BIGS / 2))" >"$T/p4" 2>&1 & pids+=($!)
    for i in 1 2 3 4; do
        rc=0; wait "${pids[$((i - 1))]}" || rc=$?
        [ "$rc" = 0 ] || fail "$tag: concurrent client $i exited $rc: $(cat "$T/p$i")"
    done
    assert_eq "$(cat "$T/p1")" "ok bytes=$BIGS" "$tag: client 1"; count_ok read "$BIGS"
    assert_eq "$(cat "$T/p2")" "ok bytes=$BIGS" "$tag: client 2"; count_ok read "$BIGS"
    assert_eq "$(cat "$T/p3")" "ok bytes=$((HS + L1))" "$tag: client 3"; count_ok read $((HS + L1))
    assert_eq "$(cat "$T/p4")" "ok bytes=$((BIGS - BIGS / 2))" "$tag: client 4"; count_ok read $((BIGS - BIGS / 2))
    cmp "$T/big" "$DEV/$tag-p1" || fail "$tag: concurrent client 1 (big) differs"
    cmp -n "$BIGS" -i 0:512 "$T/big" "$DEV/$tag-p2" || fail "$tag: concurrent client 2 (big, same file) differs"
    cmp "$T/out.exp" "$DEV/$tag-p3" || fail "$tag: concurrent client 3 (out) differs"
    cmp -n $((BIGS - BIGS / 2)) -i $((BIGS / 2)):64 "$T/big" "$DEV/$tag-p4" ||
        fail "$tag: concurrent client 4 (half of big) differs"
    cmp -n 512 "$T/$tag-p2.ref" "$DEV/$tag-p2" || fail "$tag: client 2 wrote before its dev_off"
    pass "$tag: four concurrent GPU_READ clients, two different allocations of the same file"

    # two clients at once into one allocation (both may import it at once)
    mkdev "$tag-sh" $((2 * MiB + 4096))
    "$GPUIO" read "$MNT/ns/c/big" "$DEV/$tag-sh" "$((7 * MiB + 3)):5:$MiB" >"$T/s1" 2>&1 & pids=($!)
    "$GPUIO" read "$MNT/ns/w/out" "$DEV/$tag-sh" "$((A - 1000)):$((MiB + 5)):$MiB" >"$T/s2" 2>&1 & pids+=($!)
    for i in 1 2; do
        rc=0; wait "${pids[$((i - 1))]}" || rc=$?
        [ "$rc" = 0 ] || fail "$tag: client $i sharing an allocation exited $rc: $(cat "$T/s$i")"
        assert_eq "$(cat "$T/s$i")" "ok bytes=$MiB" "$tag: client $i sharing an allocation"
        count_ok read "$MiB"
    done
    cp "$T/$tag-sh.ref" "$T/exp"
    put "$T/big" $((7 * MiB + 3)) "$T/exp" 5 "$MiB"
    put "$T/out.exp" $((A - 1000)) "$T/exp" $((MiB + 5)) "$MiB"
    cmp "$T/exp" "$DEV/$tag-sh" || fail "$tag: two clients sharing an allocation: bytes differ"
    pass "$tag: two concurrent clients sharing one allocation"

    # --- GPU_WRITEs rewriting the big file (same bytes) and writing a new
    # one, racing O_DIRECT readers of 1 MiB windows, which must never see
    # anything but the file's bytes
    # (the writers start once the reader is ready: on a busy machine they
    # could finish before python has started)
    rm -f "$T/race-ready"
    (
        while [ ! -e "$T/race-ready" ]; do sleep 0.01; done
        for i in 1 2 3 4 5; do
            "$GPUIO" write "$MNT/ns/c/big" "$DEV/$tag-p1" "0:0:$BIGS" || exit 1
        done
    ) >"$T/race" 2>&1 &
    local wpid=$! out
    (
        while [ ! -e "$T/race-ready" ]; do sleep 0.01; done
        exec "$GPUIO" write "$MNT/ns/w/new" "$DEV/$tag-p2" "0:512:$BIGS"
    ) >"$T/race2" 2>&1 & local wpid2=$!
    out=$(py - "$MNT/ns/c/big" "$T/big" "$wpid" "$T/race-ready" <<'EOF'
import mmap, os, random, sys
path, ref, wpid, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = open(ref, "rb").read()
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
open(ready, "w").close()
def writing():
    try:
        st = open("/proc/%d/stat" % wpid).read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] != "Z"
n = during = 0
rnd = random.Random(1)
while True:
    w = writing()
    off = rnd.randrange(0, len(data) // 4096) * 4096
    k = os.preadv(fd, [buf], off)
    if buf[:k] != data[off:off + (1 << 20)]:
        print("mismatch: %d bytes at %d (read %d, %d while writing)" % (k, off, n, during))
        sys.exit(1)
    n += 1
    during += w
    if not w and n >= 3:
        break
print(n, during)
EOF
    ) || fail "$tag: an O_DIRECT reader saw other bytes while GPU_WRITE rewrote the file: $out"
    local reads=${out% *} during=${out#* }
    rc=0; wait "$wpid" || rc=$?
    [ "$rc" = 0 ] || fail "$tag: racing GPU_WRITE failed: $(cat "$T/race")"
    rc=0; wait "$wpid2" || rc=$?
    [ "$rc" = 0 ] || fail "$tag: GPU_WRITE of a new file during the race failed: $(cat "$T/race2")"
    check '[ "$during" -ge 1 ]' "$tag: no read ran while the GPU_WRITEs did"
    assert_eq "$(tr '\n' ' ' <"$T/race")" "$(printf 'ok bytes=%s ' $BIGS $BIGS $BIGS $BIGS $BIGS)" "$tag: racing GPU_WRITEs"
    assert_eq "$(cat "$T/race2")" "ok bytes=$BIGS" "$tag: GPU_WRITE of a new file"
    for k in 1 2 3 4 5 6; do count_ok write "$BIGS"; done
    cmp "$T/big" "$MNT/ns/c/big" || fail "$tag: big differs after the racing rewrites"
    cmp "$T/big" "$MNT/ns/w/new" || fail "$tag: the file written during the race differs"
    log "$tag: $reads O_DIRECT reads ($during while writing) raced 5 GPU_WRITEs of 20 MiB"
    pass "$tag: GPU_WRITEs racing plain readers"

    # --- the mapping cache empties once the clients are gone
    t0=$(wait_unmapped "$tag after the concurrent clients")
    log "$tag: kvfs_gpu_mappings back to 0 after ${t0} s"
    expect_counters "$tag: gpu counters after the remount"
    kv_umount "$MNT"
    rm -rf "$STORE" "${DEV:?}/$tag"-* "$T/$tag"-*.ref
}

data_round none 64 none
data_round lz4 1024 lz4
data_round zstd 256 zstd

# ===========================================================================
# 2. The mapping cache and its counters, exactly.
# ===========================================================================
STORE=$T/store-m MNT=$T/mnt-m
kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE"
reset_counters
mkdir -p "$MNT/ns/c"
cp "$SRC"/layer* "$MNT/ns/c/"
f=$(stats_file)
py "$PROM" "$f" --expect kvfs_gpu_mappings=0 --expect kvfs_gpu_ipc_opens_total=0 \
    --expect kvfs_gpu_requests_total=0 >/dev/null || fail "gpu counters of a new mount: $(grep gpu "$f")"
for i in 1 2 3; do mkdev "m$i" $((256 * KiB)); done
# three clients, three allocations: three imports, still mapped or reaped
for i in 1 2 3; do
    gio_ok 65536 "GPU_READ into allocation $i" read "$MNT/ns/c/layer0.k.f16" "$DEV/m$i" "0:$((i * 1000)):65536"
done
m=$(stat1 kvfs_gpu_mappings)
check '[ "$m" -le 3 ]' "kvfs_gpu_mappings=$m after three clients of three allocations"
assert_eq "$(stat1 kvfs_gpu_ipc_opens_total)" 3 "kvfs_gpu_ipc_opens_total after three allocations"
t0=$(wait_unmapped "three allocations")
log "three mappings reaped after ${t0} s"
# the same allocations again, once all are gone: imported again
gio_ok 65536 "GPU_WRITE from allocation 1" write "$MNT/ns/c/new" "$DEV/m1" "0:1000:65536"
gio_err EBADF 10 0 0 "GPU_WRITE on a read-only fd" --open ro write "$MNT/ns/c/new" "$DEV/m2" "0:0:1"
gio_err EFAULT 5 0 0 "GPU_READ past allocation 3" read "$MNT/ns/c/layer0.k.f16" "$DEV/m3" "0:$((256 * KiB - 10)):11"
# refused before the import (access) or after it (device range): 1 + 1 imports
assert_eq "$(stat1 kvfs_gpu_ipc_opens_total)" 5 "kvfs_gpu_ipc_opens_total after re-importing two allocations"
cmp -n 65536 "$SRC/layer0.k.f16" "$MNT/ns/c/new" || fail "GPU_WRITE from allocation 1 differs"
wait_unmapped "re-imported allocations" >/dev/null
expect_counters "gpu counters of the mapping-cache mount"
assert_eq "$(stat1 kvfs_gpu_ipc_opens_total)" 5 "kvfs_gpu_ipc_opens_total"
# a file unlinked while open: the fd still works for both directions
exec 4<>"$MNT/ns/c/layer1.v.f16"
rm "$MNT/ns/c/layer1.v.f16"
mkdev m4 $((256 * KiB))
gio_ok 131072 "GPU_READ of an unlinked, open file" read /proc/self/fd/4 "$DEV/m4" "0:7:131072"
cmp -n 131072 -i 0:7 "$SRC/layer1.v.f16" "$DEV/m4" || fail "GPU_READ of an unlinked, open file differs"
gio_ok 1000 "GPU_WRITE to an unlinked, open file" --open rw write /proc/self/fd/4 "$DEV/m4" "500:0:1000"
cmp -n 1000 -i 500:0 /proc/self/fd/4 "$DEV/m4" || fail "GPU_WRITE to an unlinked, open file differs"
exec 4>&-
wait_unmapped "the unlinked file" >/dev/null
expect_counters "gpu counters of the mapping-cache mount"
# clients killed during their requests: the daemon finishes them, serves on,
# and lets go of their allocations
cp "$T/big" "$MNT/ns/c/big"
mkdev k1 "$BIGS"; mkdev k2 "$BIGS"
"$GPUIO" read "$MNT/ns/c/big" "$DEV/k1" "0:0:$BIGS" >/dev/null 2>&1 & k1=$!
"$GPUIO" write "$MNT/ns/c/kw" "$DEV/k2" "0:0:$BIGS" >/dev/null 2>&1 & k2=$!
sleep 0.05
kill -9 "$k1" "$k2" 2>/dev/null || true
wait "$k1" "$k2" 2>/dev/null || true
kv_assert_alive
t0=$(wait_unmapped "clients killed during their requests")
cmp "$T/big" "$MNT/ns/c/big" || fail "big differs after a client was killed during GPU_READ"
n=0
if [ -e "$MNT/ns/c/kw" ]; then      # (absent if the client died before its open)
    n=$(stat -c %s "$MNT/ns/c/kw")
    check '[ "$n" -le "$BIGS" ]' "size $n of a file whose GPU_WRITE client was killed"
    cmp -n "$n" "$DEV/k2" "$MNT/ns/c/kw" || fail "a killed client's GPU_WRITE left other bytes than its own"
fi
gio_ok $MiB "GPU_READ after clients were killed" read "$MNT/ns/c/big" "$DEV/k1" "0:0:$MiB"
cmp -n $MiB "$T/big" "$DEV/k1" || fail "GPU_READ after clients were killed differs"
log "killed clients: allocations unmapped after ${t0} s; the killed GPU_WRITE left $n bytes"
kv_umount "$MNT"
pass "mapping cache: one import per allocation, unmapped within ${t0} s of the clients' exit; counters exact"

# ===========================================================================
# 3. Copy failures.
# ===========================================================================
STORE=$T/store-e MNT=$T/mnt-e
KVFS_FAKE_GPU_FAIL_COPY=1 kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE,chunk=64K"
reset_counters
mkdir -p "$MNT/ns/c"
cp "$SRC"/layer* "$MNT/ns/c/"
cp "$T/big" "$MNT/ns/c/big"
mkdev e1 $((2 * MiB))
E=$MNT/ns/c/layer1.v.bf16
gio_err EIO 11 0 0 "GPU_READ with failing copies" read "$E" "$DEV/e1" "0:0:131072"
gio_err EIO 11 0 0 "GPU_READ of 2 segments with failing copies" read "$MNT/ns/c/big" "$DEV/e1" "$MiB:0:$MiB" "0:$MiB:$MiB"
cmp "$T/e1.ref" "$DEV/e1" || fail "a failed GPU_READ changed the allocation"
gio_err EIO 11 0 0 "GPU_WRITE with failing copies" write "$E" "$DEV/e1" "0:0:131072"
gio_err EIO 11 0 0 "GPU_WRITE extending a file with failing copies" write "$E" "$DEV/e1" "100:0:5000" "131072:0:$MiB"
gio_err EIO 11 0 0 "GPU_WRITE of a new file with failing copies" write "$MNT/ns/c/new" "$DEV/e1" "0:0:$MiB"
cmp "$SRC/layer1.v.bf16" "$E" || fail "the file of a failed GPU_WRITE changed"
assert_eq "$(stat -c %s "$MNT/ns/c/new")" 0 "size of a new file whose GPU_WRITE failed"
for f in "$SRC"/layer*; do
    cmp "$f" "$MNT/ns/c/$(basename "$f")" || fail "plain read of $(basename "$f") after copy failures"
done
cmp "$T/big" "$MNT/ns/c/big" || fail "plain read of big after copy failures"
grep -q "gpu read: inode $(stat -c %i "$E"): copy to the device failed: fake copy failure" "${KV_LOG[$MNT]}" ||
    fail "no log line for the failed GPU_READ copy"
grep -q "gpu write: inode $(stat -c %i "$E"): copy from the device failed: fake copy failure" "${KV_LOG[$MNT]}" ||
    fail "no log line for the failed GPU_WRITE copy"
expect_counters "gpu counters after copy failures"
kv_remount "$STORE" "$MNT" "gpu=$GPU_FAKE,chunk=64K"
cmp "$SRC/layer1.v.bf16" "$MNT/ns/c/layer1.v.bf16" || fail "the file of a failed GPU_WRITE differs after a remount"
assert_eq "$(stat -c %s "$MNT/ns/c/new")" 0 "size after a remount of a new file whose GPU_WRITE failed"
kv_umount "$MNT"
pass "copy failures: EIO/E_COPY for GPU_READ and GPU_WRITE, logged, nothing changed, the daemon serves"

# ===========================================================================
# 4. Capacity: everything pinned, GPU_WRITE gets ENOSPC.
# ===========================================================================
STORE=$T/store-f MNT=$T/mnt-f
kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE,capacity=4M,codec=none"
reset_counters
for i in 1 2 3; do
    mkdir -p "$MNT/ns/p$i"
    put "$T/big" $((i * MiB)) "$T/p$i" 0 "$MiB"
    cp "$T/p$i" "$MNT/ns/p$i/f"
    setfattr -n user.kvfs.pin -v 1 "$MNT/ns/p$i"
done
mkdir "$MNT/ns/x"
mkdev f1 $((4 * MiB))
e0=$(stat1 kvfs_enospc_total)
gio_err ENOSPC 12 0 0 "GPU_WRITE of 2 MiB with every context pinned" write "$MNT/ns/x/f" "$DEV/f1" "0:0:$((2 * MiB))"
# the first segment fits, the second does not: bytes_done counts the first
gio_err ENOSPC 12 1 262144 "GPU_WRITE whose 2nd segment does not fit" \
    write "$MNT/ns/x/f" "$DEV/f1" "0:4096:262144" "262144:0:$((2 * MiB))"
check '[ "$(stat1 kvfs_enospc_total)" -ge $((e0 + 2)) ]' "kvfs_enospc_total did not count the refused GPU_WRITEs"
for i in 1 2 3; do
    cmp "$T/p$i" "$MNT/ns/p$i/f" || fail "pinned context p$i damaged by the refused GPU_WRITEs"
done
assert_eq "$(stat -c %s "$MNT/ns/x/f")" 262144 "size of the file after the partly done GPU_WRITE"
cmp -n 262144 -i 4096:0 "$DEV/f1" "$MNT/ns/x/f" || fail "the completed segment of the refused GPU_WRITE differs"
check '[ "$(stat1 kvfs_stored_bytes)" -le $((4 * MiB)) ]' "stored bytes above the capacity"
expect_counters "gpu counters after ENOSPC"
kv_remount "$STORE" "$MNT" "gpu=$GPU_FAKE,capacity=4M,codec=none"
for i in 1 2 3; do
    cmp "$T/p$i" "$MNT/ns/p$i/f" || fail "pinned context p$i differs after a remount"
done
kv_umount "$MNT"
pass "capacity: GPU_WRITE with everything pinned gets ENOSPC/E_IO; bytes_done exact; pinned files intact"

# ===========================================================================
# 5. GPU_WRITE against buffered readers of the same file, on a daemon with a
#    single-threaded request loop (-s): after a GPU_WRITE the daemon drops
#    the kernel's cached pages of the file; it must never wait there for a
#    page whose READ only it can answer.  A watchdog aborts the connection
#    (umount -f) if the mount hangs, so a deadlock fails the test instead of
#    blocking it.
# ===========================================================================
STORE=$T/store-s MNT=$T/mnt-s
printf '#!/bin/sh\nexec "%s" -s "$@"\n' "$KVFS" >"$T/kvfs-single"
chmod +x "$T/kvfs-single"
KVFS=$T/kvfs-single kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE"
reset_counters
mkdir -p "$MNT/ns/c"
put "$T/big" 0 "$T/s4" 0 $((4 * MiB))
cp "$T/s4" "$MNT/ns/c/f"
mkdev s4 $((4 * MiB))
cp "$T/s4" "$DEV/s4"
rm -f "$T/stop"
: >"$T/wprog"; : >"$T/rprog"
# Whatever ends the test while the race runs first aborts the connection
# (umount -f), so that no process stays blocked in the kernel.
RACE_MNT=$MNT
race_abort() {
    [ -n "${RACE_MNT:-}" ] || return 0
    touch "$T/stop"
    umount -f "$RACE_MNT" 2>/dev/null || true
    RACE_MNT=""
}
race_exit() {
    local rc=$?
    trap - ERR
    set +e
    race_abort
    (exit "$rc")
    kv_cleanup
}
trap race_exit EXIT
(
    while [ ! -e "$T/stop" ]; do
        "$GPUIO" write "$MNT/ns/c/f" "$DEV/s4" "0:0:$((4 * MiB))" >>"$T/wout" 2>&1 || exit 1
        echo >>"$T/wprog"
    done
) & spid_w=$!
(
    while [ ! -e "$T/stop" ]; do
        cmp "$T/s4" "$MNT/ns/c/f" >>"$T/rout" 2>&1 || exit 1
        echo >>"$T/rprog"
    done
) & spid_r=$!
hung="" last=0 still=0 i=0
while :; do                        # 4 s of racing; a hang: 5 s without progress
    sleep 0.1
    i=$((i + 1))
    now=$(($(wc -l <"$T/wprog") + $(wc -l <"$T/rprog")))
    if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0 last=$now; fi
    if [ "$still" -ge 50 ]; then hung=1; break; fi
    if ! kv_pid_alive "$spid_w" || ! kv_pid_alive "$spid_r"; then break; fi
    if [ "$i" -ge 40 ] && [ "$still" = 0 ]; then break; fi
done
touch "$T/stop"
if [ -n "$hung" ]; then
    stacks=$(for t in /proc/"${KV_PID[$MNT]}"/task/*; do
        grep -m3 -E 'folio_lock|inval|fuse_' "$t/stack" 2>/dev/null | tr '\n' ' ' || true
        printf '| '
    done)
    race_abort
    wait "$spid_w" "$spid_r" 2>/dev/null || true
    fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kv_pid_alive "${KV_PID[$MNT]}" || break; sleep 0.05; done
    wait "${KV_PID[$MNT]}" 2>/dev/null || true
    unset "KV_PID[$MNT]"
    fail "the -s daemon hung: GPU_WRITEs ($(wc -l <"$T/wprog") done) and buffered readers" \
        "($(wc -l <"$T/rprog") done) of one file made no progress for 5 s (connection aborted);" \
        "daemon threads: $stacks"
fi
RACE_MNT=""
trap kv_cleanup EXIT
rc=0; wait "$spid_w" || rc=$?
[ "$rc" = 0 ] || fail "-s daemon: a GPU_WRITE failed: $(tail -n 3 "$T/wout")"
rc=0; wait "$spid_r" || rc=$?
[ "$rc" = 0 ] || fail "-s daemon: a buffered reader saw other bytes during GPU_WRITEs: $(tail -n 3 "$T/rout")"
nw=$(wc -l <"$T/wprog") nr=$(wc -l <"$T/rprog")
check '[ "$nw" -ge 3 ] && [ "$nr" -ge 3 ]' "-s daemon: only $nw GPU_WRITEs and $nr reads in 4 s"
cmp "$T/s4" "$MNT/ns/c/f" || fail "-s daemon: the file differs after the race"
kv_umount "$MNT"
pass "-s daemon: $nw GPU_WRITEs raced $nr buffered readers of the same file without a hang"
