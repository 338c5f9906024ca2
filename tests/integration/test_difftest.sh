#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Randomized differential test (tests/difftest.py) against a shadow directory
# on tmpfs, with 64 KiB chunks (many chunk boundaries) and with the default
# 1 MiB chunks; after a remount the kvfs trees must still equal the shadows.
# DIFFTEST_OPS / DIFFTEST_SEEDS override the defaults.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

DIFFTEST=$(realpath "$KV_LIB_DIR/../difftest.py")
OPS=${DIFFTEST_OPS:-3000}
read -ra SEEDS <<<"${DIFFTEST_SEEDS:-1 2 3}"
[ "${#SEEDS[@]}" -ge 2 ] || fail "DIFFTEST_SEEDS needs at least two seeds"
kv_mktemp SHADOW /dev/shm

# run_dt MNT CHUNK SEED [ARGS...]
run_dt() {
    local mnt=$1 chunk=$2 seed=$3 out rc=0; shift 3
    out=$(python3 "$DIFFTEST" --mount "$mnt" --shadow "$SHADOW" --seed "$seed" \
          --ops "$OPS" --chunk "$chunk" "$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    [ "$rc" -eq 0 ] || fail "difftest seed=$seed chunk=$chunk on $mnt found a mismatch (rc=$rc)"
    kv_assert_alive
}

M64=$T/mnt-64k
M1M=$T/mnt-1m
kv_mount "$T/store-64k" "$M64" chunk=64K
kv_mount "$T/store-1m" "$M1M"
# files that no difftest touches: they must survive everything below
SRC=$KV_DATA/gpl3
for m in "$M64" "$M1M"; do
    mkdir -p "$m/static"
    cp "$SRC"/* "$m/static/"
done

# all seeds but the last with 64 KiB chunks, the last with the default chunks
last=${SEEDS[-1]}
for seed in "${SEEDS[@]}"; do
    if [ "$seed" = "$last" ]; then
        run_dt "$M1M" 1M "$seed"
        pass "difftest seed=$seed, $OPS ops, default chunk"
    else
        run_dt "$M64" 64K "$seed"
        pass "difftest seed=$seed, $OPS ops, chunk=64K"
    fi
done
# a small-I/O, many-fds variant on 64 KiB chunks
run_dt "$M64" 64K 1001 --max-io 20K --max-open 16 --files 4 --dirs 3
pass "difftest seed=1001 small I/O"

kv_remount "$T/store-64k" "$M64" chunk=64K
kv_remount "$T/store-1m" "$M1M"
for seed in "${SEEDS[@]}" 1001; do
    m=$M64
    [ "$seed" = "$last" ] && m=$M1M
    out=$(python3 "$DIFFTEST" --mount "$m" --shadow "$SHADOW" --seed "$seed" --verify-only 2>&1) ||
        fail "after remount, seed=$seed tree differs from its shadow: $out"
    log "$out"
    grep -q ' [1-9][0-9]* entries identical' <<<"$out" || fail "seed=$seed: verified an empty tree: $out"
done
pass "all trees equal their shadows after remount"

# carry on writing files that were written in the previous mount session
run_dt "$M64" 64K "${SEEDS[0]}" --resume --ops 1000
run_dt "$M1M" 1M "$last" --resume --ops 1000
kv_remount "$T/store-64k" "$M64" chunk=64K
kv_remount "$T/store-1m" "$M1M"
for seed in "${SEEDS[0]}" "$last"; do
    m=$M64
    [ "$seed" = "$last" ] && m=$M1M
    out=$(python3 "$DIFFTEST" --mount "$m" --shadow "$SHADOW" --seed "$seed" --verify-only 2>&1) ||
        fail "after resumed run and remount, seed=$seed tree differs from its shadow: $out"
done
for m in "$M64" "$M1M"; do
    diff -r "$SRC" "$m/static" || fail "$m/static (written first, never modified) is damaged"
done
pass "resumed runs on remounted stores; equal after another remount"
kv_umount "$M64"
kv_umount "$M1M"
