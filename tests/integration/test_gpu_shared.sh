#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The fake GPU backend (tests/gpu/fake_plugin.c) takes a file path as its
# IPC handle and maps that file read-write in the daemon, as root: on a
# mount with allow_other any user could have had the daemon overwrite any
# file with GPU_READ (issue 12). The plugin is marked test-only, and kvfs
# does not load it on a mount with allow_other: the fast path answers as
# with no backend (ENODEV) and the log says why. Without allow_other it
# still loads (only the mounting user reaches the mount).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_other_user
kv_need_gpu_fake

chmod 755 "$T"   # let the other user reach the mountpoint
MNT=$T/mnt
STORE=$T/store
# A file only root may write, short enough for the 64-byte fake handle.
DEV=$T/dev
if [ ${#DEV} -gt 44 ]; then kv_mktemp DEV /tmp; fi
mkdir -p "$DEV"
[ ${#DEV} -le 44 ] || fail "no short directory for the fake device files ($DEV)"
printf 'root only %.0s' {1..500} >"$DEV/rootonly"
chmod 600 "$DEV/rootonly"
sum=$(sha256sum <"$DEV/rootonly")

# 1. allow_other: the test-only plugin is refused.
kv_mount "$STORE" "$MNT" "allow_other,gpu=$GPU_FAKE"
mkdir -p "$MNT/ns/ctx"
head -c 4096 /dev/urandom >"$MNT/ns/ctx/layer"
chmod 755 "$MNT" "$MNT/ns" "$MNT/ns/ctx"
chmod 644 "$MNT/ns/ctx/layer"
q=$(as_nobody "$GPUIO" query "$MNT/ns/ctx/layer") || fail "QUERY as nobody: $q"
case $q in *" backend=0 name=none ndev=0 "*) ;; *) fail "allow_other: QUERY shows a backend: $q" ;; esac
rc=0
out=$(as_nobody "$GPUIO" read "$MNT/ns/ctx/layer" "$DEV/rootonly" 0:0:4096 2>&1) || rc=$?
assert_eq "$rc" 1 "GPU_READ by nobody into a root-only file: exit status ($out)"
case $out in "err errno=ENODEV "*) ;; *) fail "GPU_READ by nobody: not ENODEV: $out" ;; esac
assert_eq "$(sha256sum <"$DEV/rootonly")" "$sum" "the root-only file after nobody's GPU_READ"
grep -q "gpu: $GPU_FAKE is a plugin for tests only.*not loaded on a mount with allow_other" \
    "${KV_LOG[$MNT]}" || fail "the log does not say why the plugin was refused"
kv_umount "$MNT"
pass "allow_other: the fake plugin is not loaded, the root-only file untouched"

# 2. Without allow_other it loads and serves its mounting user.
kv_mount "$STORE" "$MNT" "gpu=$GPU_FAKE"
q=$("$GPUIO" query "$MNT/ns/ctx/layer") || fail "QUERY: $q"
case $q in *" name=fake ndev=1 "*) ;; *) fail "without allow_other: QUERY: $q" ;; esac
head -c 8192 /dev/zero >"$DEV/mine"
out=$("$GPUIO" read "$MNT/ns/ctx/layer" "$DEV/mine" 0:0:4096) || fail "GPU_READ: $out"
assert_eq "$out" "ok bytes=4096" "GPU_READ with the fake backend"
cmp -n 4096 "$MNT/ns/ctx/layer" "$DEV/mine" || fail "GPU_READ copied other bytes"
kv_umount "$MNT"
pass "without allow_other the fake plugin loads and serves"
