#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Multi-chunk files (64 MiB) with chunk=1M and chunk=64K: copy, compare, reads
# at odd offsets and lengths across chunk boundaries, partial overwrite and
# truncation inside a chunk, sparse files, and all of it after a remount
# (so reads come from the store, not from the kernel page cache).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

MiB=1048576
head -c 64M /dev/urandom >"$T/rand64"
seq 1 20000000 | head -c 64M >"$T/text64" || true
assert_eq "$(stat -c %s "$T/text64")" $((64 * MiB)) "size of the compressible input"
head -c 4096 /dev/urandom >"$T/blk4k"

# odd_reads FILE REF: compare reads at awkward offsets/lengths
odd_reads() {
    local f=$1 ref=$2 off len bs
    for spec in 0:1 1:4099 65535:2 65535:131074 1048575:3 1048576:1048576 \
                1048577:3000000 33554431:65537 $((64 * MiB - 100)):4096 \
                $((64 * MiB)):10 $((64 * MiB + 5)):10 12345678:777 50000000:2500000; do
        off=${spec%%:*} len=${spec##*:}
        for bs in 4099 1000000; do
            cmp <(dd if="$ref" bs="$bs" skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none) \
                <(dd if="$f" bs="$bs" skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none) ||
                fail "$f: read of $len bytes at offset $off (bs=$bs) differs"
        done
    done
    # backwards, chunk-sized strides at non-aligned offsets
    python3 - "$f" "$ref" <<'EOF' || fail "$f: backwards strided preads differ"
import os, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(b).st_size
off = size - 70001
while off > 0:
    if os.pread(a, 70001, off) != os.pread(b, 70001, off):
        sys.exit(f"pread(70001, {off}) differs")
    off -= 1048576 + 4097
EOF
}

for chunk in 1M 64K; do
    STORE=$T/store-$chunk
    MNT=$T/mnt-$chunk
    kv_mount "$STORE" "$MNT" "chunk=$chunk"
    mkdir -p "$MNT/ns/ctx"
    cp "$T/rand64" "$T/text64" "$MNT/ns/ctx/"
    cmp "$T/rand64" "$MNT/ns/ctx/rand64" || fail "chunk=$chunk: rand64 differs after cp"
    cmp "$T/text64" "$MNT/ns/ctx/text64" || fail "chunk=$chunk: text64 differs after cp"
    assert_eq "$(stat -c %s "$MNT/ns/ctx/rand64")" $((64 * MiB)) "chunk=$chunk: size of rand64"
    st=$(du_stored "$MNT/ns/ctx/text64")
    check '[ "$st" -lt $((40 * MiB)) ]' "chunk=$chunk: compressible 64 MiB stored as $st bytes"

    # sparse: 100M with 4K of data at 50M
    truncate -s 100M "$MNT/ns/ctx/sparse"
    dd if="$T/blk4k" of="$MNT/ns/ctx/sparse" bs=4096 seek=$((50 * 256)) conv=notrunc status=none
    truncate -s 100M "$T/sparse"
    dd if="$T/blk4k" of="$T/sparse" bs=4096 seek=$((50 * 256)) conv=notrunc status=none
    assert_eq "$(stat -c %s "$MNT/ns/ctx/sparse")" $((100 * MiB)) "chunk=$chunk: size of sparse file"

    # partial overwrite straddling a chunk boundary, truncate inside a chunk
    cp "$T/rand64" "$T/mod"
    cp "$T/rand64" "$MNT/ns/ctx/mod"
    for off in $((MiB - 1000)) $((3 * MiB + 65536 - 7)) $((40 * MiB + 1)); do
        dd if="$T/blk4k" of="$T/mod" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
        dd if="$T/blk4k" of="$MNT/ns/ctx/mod" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
    done
    truncate -s $((20 * MiB + 12345)) "$T/mod" "$MNT/ns/ctx/mod"
    truncate -s $((30 * MiB)) "$T/mod" "$MNT/ns/ctx/mod"
    cmp "$T/mod" "$MNT/ns/ctx/mod" || fail "chunk=$chunk: overwritten/truncated file differs"

    for pass_ in live remounted; do
        if [ "$pass_" = remounted ]; then kv_remount "$STORE" "$MNT" "chunk=$chunk"; fi
        cmp "$T/rand64" "$MNT/ns/ctx/rand64" || fail "chunk=$chunk ($pass_): rand64 differs"
        cmp "$T/text64" "$MNT/ns/ctx/text64" || fail "chunk=$chunk ($pass_): text64 differs"
        cmp "$T/mod" "$MNT/ns/ctx/mod" || fail "chunk=$chunk ($pass_): mod differs"
        cmp "$T/sparse" "$MNT/ns/ctx/sparse" || fail "chunk=$chunk ($pass_): sparse file differs"
        cmp -n $((10 * MiB)) <(dd if="$MNT/ns/ctx/sparse" bs=1M skip=60 count=10 status=none) /dev/zero ||
            fail "chunk=$chunk ($pass_): sparse file is not zero at 60M..70M"
        cmp <(dd if="$MNT/ns/ctx/sparse" bs=4096 skip=$((50 * 256)) count=1 status=none) "$T/blk4k" ||
            fail "chunk=$chunk ($pass_): data block of the sparse file"
        odd_reads "$MNT/ns/ctx/rand64" "$T/rand64"
        odd_reads "$MNT/ns/ctx/text64" "$T/text64"
        pass "chunk=$chunk ($pass_): 64 MiB files, odd offsets, sparse, overwrite"
    done
    st=$(du_stored "$MNT/ns/ctx/sparse")
    check '[ "$st" -lt $((8 * MiB)) ]' "chunk=$chunk: 100M sparse file with 4K of data stored as $st bytes"
    kv_umount "$MNT"
done
