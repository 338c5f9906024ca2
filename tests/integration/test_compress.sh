#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Compression is visible through st_blocks (du) but never through content or
# st_size (ls).  codec=zstd / lz4 shrink compressible data, codec=none does not,
# incompressible data is stored raw, shuffle=2 helps bf16 KV under lz4.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_kv_data

# Test inputs on local disk.
{ yes 'the quick brown fox jumps over the lazy dog; kv cache line of text' || true; } |
    head -c 16M >"$T/text16m"
head -c 4M /dev/urandom >"$T/rand4m"
INPUTS=("$SRC/layer0.v.f16" "$SRC/layer0.v.bf16" "$T/text16m" "$T/rand4m")

# fill MNT: copy the inputs into MNT/ns/ctx and compare them.
fill() {
    local mnt=$1 f
    mkdir -p "$mnt/ns/ctx"
    for f in "${INPUTS[@]}"; do
        cp "$f" "$mnt/ns/ctx/"
        cmp "$f" "$mnt/ns/ctx/$(basename "$f")" || fail "$mnt: content of $(basename "$f") differs"
        assert_eq "$(stat -c %s "$mnt/ns/ctx/$(basename "$f")")" "$(stat -c %s "$f")" \
            "$mnt: st_size of $(basename "$f")"
    done
}

# ratio_ok FILE MAXPCT: stored bytes (du) must be < MAXPCT% of apparent size.
stored_below() {
    local f=$1 pct=$2 st ap
    st=$(du_stored "$f"); ap=$(du_apparent "$f")
    check '[ "$ap" -gt 0 ] && [ "$((st * 100))" -lt "$((ap * pct))" ]' \
        "$f: du -B1 = $st is not below $pct% of apparent size $ap"
    log "$(basename "$f"): stored $st of $ap"
}

# raw_ok FILE: incompressible data must not blow up, and st_blocks must not
# claim it shrank either.
stored_raw() {
    local f=$1 st ap
    st=$(du_stored "$f"); ap=$(du_apparent "$f")
    check '[ "$((st * 100))" -le "$((ap * 105 + 65536 * 100))" ]' \
        "$f: incompressible data stored as $st bytes, apparent $ap (> 1.05x + 64KiB)"
    check '[ "$((st * 100))" -ge "$((ap * 95))" ]' \
        "$f: du claims random data shrank to $st of $ap bytes"
}

for codec in zstd lz4 zstd:3; do
    name=${codec//:/_}
    kv_mount "$T/store-$name" "$T/mnt-$name" "codec=$codec"
    M=$T/mnt-$name
    fill "$M"
    stored_below "$M/ns/ctx/layer0.v.f16" 50
    stored_below "$M/ns/ctx/layer0.v.bf16" 50
    stored_below "$M/ns/ctx/text16m" 10
    stored_raw "$M/ns/ctx/rand4m"
    # du of the whole tree is smaller than its apparent size, ls -l is logical
    st=$(du -sB1 "$M/ns" | cut -f1); ap=$(du -sB1 --apparent-size "$M/ns" | cut -f1)
    check '[ "$st" -lt "$ap" ]' "codec=$codec: du -s $st not below apparent $ap"
    assert_eq "$(stat -c %s "$M/ns/ctx/text16m")" 16777216 "codec=$codec: ls size of text16m"
    kv_umount "$M"
    # kvfsctl info agrees after unmount
    logical=$(kv_info "$T/store-$name" logical_bytes)
    stored=$(kv_info "$T/store-$name" stored_bytes)
    ratio=$(kv_info "$T/store-$name" ratio)
    expect_logical=$((131072 * 2 + 16777216 + 4194304))
    assert_eq "$logical" "$expect_logical" "codec=$codec: kvfsctl logical_bytes"
    check '[ "$stored" -gt 0 ] && [ "$stored" -lt "$((logical / 2))" ]' \
        "codec=$codec: kvfsctl stored_bytes $stored is not < half of logical $logical"
    check 'awk -v r="$ratio" "BEGIN { exit !(r + 0 > 1.5) }"' \
        "codec=$codec: kvfsctl ratio $ratio should be > 1.5"
    assert_eq "$(kv_info "$T/store-$name" files)" 4 "codec=$codec: kvfsctl files"
    # data survives and still reads back after remount
    kv_mount "$T/store-$name" "$M"
    for f in "${INPUTS[@]}"; do
        cmp "$f" "$M/ns/ctx/$(basename "$f")" || fail "codec=$codec: $(basename "$f") differs after remount"
    done
    stored_below "$M/ns/ctx/text16m" 10
    kv_umount "$M"
    pass "codec=$codec"
done

# --- codec=none: stored ~= apparent ------------------------------------------
kv_mount "$T/store-none" "$T/mnt-none" "codec=none"
M=$T/mnt-none
fill "$M"
for f in "$M"/ns/ctx/*; do
    st=$(du_stored "$f"); ap=$(du_apparent "$f")
    check '[ "$((st * 100))" -ge "$((ap * 90 - 4096 * 100))" ] && [ "$((st * 100))" -le "$((ap * 110 + 4096 * 100))" ]' \
        "codec=none: $(basename "$f") stored $st vs apparent $ap not within 10% + 4KiB"
done
kv_umount "$M"
logical=$(kv_info "$T/store-none" logical_bytes)
stored=$(kv_info "$T/store-none" stored_bytes)
check '[ "$stored" -ge "$((logical * 9 / 10))" ]' \
    "codec=none: kvfsctl stored_bytes $stored much below logical $logical"
pass "codec=none"

# --- shuffle: bf16 KV that lz4 cannot compress raw, but can after shuffle ----
kv_mount "$T/store-sh2" "$T/mnt-sh2" "codec=lz4,shuffle=2"
kv_mount "$T/store-shoff" "$T/mnt-shoff" "codec=lz4,shuffle=off"
for m in "$T/mnt-sh2" "$T/mnt-shoff"; do
    mkdir -p "$m/ns/ctx"
    cp "$SRC/layer1.v.bf16" "$SRC/layer0.v.bf16" "$m/ns/ctx/"
    cmp "$SRC/layer1.v.bf16" "$m/ns/ctx/layer1.v.bf16" || fail "$m: layer1.v.bf16 differs"
    cmp "$SRC/layer0.v.bf16" "$m/ns/ctx/layer0.v.bf16" || fail "$m: layer0.v.bf16 differs"
done
stored_below "$T/mnt-sh2/ns/ctx/layer1.v.bf16" 85
stored_raw "$T/mnt-shoff/ns/ctx/layer1.v.bf16"
stored_below "$T/mnt-shoff/ns/ctx/layer0.v.bf16" 50
kv_umount "$T/mnt-sh2"
kv_umount "$T/mnt-shoff"
pass "shuffle=2 vs shuffle=off"
