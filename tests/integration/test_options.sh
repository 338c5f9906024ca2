#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Command line: --help, --version, valid option combinations mount and work,
# unknown or malformed options are refused with a message naming the option
# and nothing gets mounted.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SRC=$KV_DATA/gpl3

# --- --help / --version -------------------------------------------------------
rc=0; out=$(timeout 10 "$KVFS" --help 2>&1) || rc=$?
assert_eq "$rc" 0 "kvfs --help exit status"
for word in codec shuffle chunk ram workers; do
    grep -q -- "$word" <<<"$out" || fail "kvfs --help does not mention '$word': $out"
done
rc=0; out=$(timeout 10 "$KVFS" --version 2>&1) || rc=$?
assert_eq "$rc" 0 "kvfs --version exit status"
grep -q '[0-9]' <<<"$out" || fail "kvfs --version prints no version number: $out"
pass "--help, --version"

# --- missing arguments ----------------------------------------------------------
rc=0; out=$(timeout 10 "$KVFS" 2>&1) || rc=$?
check '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ -n "$out" ]' "kvfs without arguments: rc=$rc, output: $out"
rc=0; out=$(timeout 10 "$KVFS" "$T/only-store" 2>&1) || rc=$?
check '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]' "kvfs with only STORE: rc=$rc, output: $out"
kv_try "$T/store-x" "$T/mnt-x" -f -o codec=lz4 extra-arg
check '[ "$KV_TRY_RC" -ne 0 ]' "kvfs with three positional arguments exited 0"
pass "missing/extra arguments refused"

# --- malformed / unknown options ---------------------------------------------
# bad OPTSTRING NAME: refused, non-zero, stderr names NAME, nothing mounted
bad() {
    local opt=$1 name=$2
    kv_try "$T/store-bad" "$T/mnt-bad" -f -o "$opt"
    check '[ "$KV_TRY_RC" -ne 0 ]' "kvfs -o $opt exited 0"
    check 'grep -qi -- "$name" <<<"$KV_TRY_OUT"' "kvfs -o $opt: message does not name '$name': $KV_TRY_OUT"
}
bad bogus=1 bogus
bad bogus bogus
bad codec=zstd:99 codec
bad codec=zstd:abc codec
bad codec=gzip codec
bad codec= codec
bad chunk=3K chunk
bad chunk=100K chunk
bad chunk=32K chunk
bad chunk=32M chunk
bad chunk=1Q chunk
bad chunk=-1M chunk
bad shuffle=7 shuffle
bad shuffle=yes shuffle
bad ram=lots ram
bad workers=abc workers
bad workers=-3 workers
bad codec=lz4,nosuchopt=2 nosuchopt
pass "malformed options refused, naming the option"

# --- valid options mount and round-trip data -------------------------------------
i=0
for opts in codec=none codec=lz4 codec=zstd codec=zstd:1 codec=zstd:19 \
            shuffle=off shuffle=2 shuffle=4 shuffle=auto chunk=64K chunk=16M chunk=2M \
            ram=16M ram=1M workers=1 workers=4 \
            codec=zstd:3,shuffle=2,chunk=128K,ram=64M,workers=2; do
    i=$((i + 1))
    kv_mount "$T/store-$i" "$T/mnt-$i" "$opts"
    mkdir -p "$T/mnt-$i/ns/ctx"
    cp "$SRC/layer0.v.f16" "$SRC/layer1.k.bf16" "$T/mnt-$i/ns/ctx/"
    kv_remount "$T/store-$i" "$T/mnt-$i" "$opts"
    cmp "$SRC/layer0.v.f16" "$T/mnt-$i/ns/ctx/layer0.v.f16" || fail "-o $opts: layer0.v.f16 differs"
    cmp "$SRC/layer1.k.bf16" "$T/mnt-$i/ns/ctx/layer1.k.bf16" || fail "-o $opts: layer1.k.bf16 differs"
    kv_umount "$T/mnt-$i"
done
pass "$i valid option sets mount and round-trip"

# A store written with one codec reads back under another.
kv_mount "$T/store-mix" "$T/mnt-mix" codec=zstd:5
mkdir -p "$T/mnt-mix/ns/a"
cp "$SRC"/* "$T/mnt-mix/ns/a/"
kv_remount "$T/store-mix" "$T/mnt-mix" codec=lz4,shuffle=off
mkdir -p "$T/mnt-mix/ns/b"
cp "$SRC"/* "$T/mnt-mix/ns/b/"
diff -r "$SRC" "$T/mnt-mix/ns/a" || fail "codec=zstd:5 data read under codec=lz4"
kv_remount "$T/store-mix" "$T/mnt-mix" codec=none
diff -r "$SRC" "$T/mnt-mix/ns/a" || fail "codec=zstd:5 data read under codec=none"
diff -r "$SRC" "$T/mnt-mix/ns/b" || fail "codec=lz4 data read under codec=none"
kv_umount "$T/mnt-mix"
pass "data written under one codec reads under another"

# A store written with chunk=64K, remounted with another chunk size: either
# the daemon refuses the mount, or the old files read back correctly (and new
# files written with the new size too).  Silently wrong data is a bug.
kv_mount "$T/store-chunk" "$T/mnt-chunk" chunk=64K
mkdir -p "$T/mnt-chunk/ns/a"
cp "$SRC"/* "$T/mnt-chunk/ns/a/"
kv_umount "$T/mnt-chunk"
rc=0; out=$(timeout 15 "$KVFS" -o chunk=1M "$T/store-chunk" "$T/mnt-chunk" 2>&1) || rc=$?
if kv_is_mounted "$T/mnt-chunk"; then
    kv_adopt "$T/mnt-chunk"
    diff -r "$SRC" "$T/mnt-chunk/ns/a" || fail "files written with chunk=64K read back wrong under chunk=1M"
    mkdir "$T/mnt-chunk/ns/b"
    cp "$SRC"/* "$T/mnt-chunk/ns/b/"
    kv_umount "$T/mnt-chunk"
    kv_mount "$T/store-chunk" "$T/mnt-chunk" chunk=64K
    diff -r "$SRC" "$T/mnt-chunk/ns/a" || fail "chunk=64K files after a chunk=1M session"
    diff -r "$SRC" "$T/mnt-chunk/ns/b" || fail "files written with chunk=1M read back wrong under chunk=64K"
    kv_umount "$T/mnt-chunk"
    pass "files keep their chunk size across remounts with another chunk="
else
    check '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]' "kvfs -o chunk=1M on a chunk=64K store: rc=$rc, not mounted: $out"
    pass "remount with another chunk size refused: $out"
fi
