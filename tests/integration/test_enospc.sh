#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# A STORE on a small (32 MiB) tmpfs: writing incompressible data until the
# backing filesystem is full must fail with ENOSPC, not crash or corrupt;
# earlier files stay intact; deleting files makes room again.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SRC=$KV_DATA/gpl3
FS=$T/fs
kv_small_fs "$FS" 32m
STORE=$FS/store
MNT=$T/mnt

kv_mount "$STORE" "$MNT"
mkdir -p "$MNT/ns/early" "$MNT/ns/fill"
cp "$SRC"/* "$MNT/ns/early/"
head -c 4M /dev/urandom >"$T/early4m"
cp "$T/early4m" "$MNT/ns/early/rand4m"
diff -r "$SRC" "$MNT/ns/early" -x rand4m || fail "early context differs from $SRC"
cmp "$T/early4m" "$MNT/ns/early/rand4m" || fail "early rand4m differs"
pass "early files written"

# --- fill up ----------------------------------------------------------------------
enospc=""
for i in $(seq 1 20); do          # 20 x 4 MiB = 80 MiB > 32 MiB
    if ! out=$(dd if=/dev/urandom of="$MNT/ns/fill/f$i" bs=1M count=4 iflag=fullblock conv=fsync 2>&1); then
        enospc=$i
        break
    fi
done
[ -n "$enospc" ] || fail "wrote 80 MiB of random data to a 32 MiB filesystem without an error"
grep -q "No space left on device" <<<"$out" || fail "write on a full STORE failed with the wrong error: $out"
log "ENOSPC at file $enospc: $out"
kv_assert_alive
# the failure is persistent, not a one-off
expect_fail "No space left on device" "a second write on a full STORE" \
    dd if=/dev/urandom of="$MNT/ns/fill/again" bs=1M count=4 iflag=fullblock conv=fsync
kv_assert_alive
pass "ENOSPC reported"

# --- earlier data intact, metadata operations still work -----------------------
for f in "$SRC"/*; do
    cmp "$f" "$MNT/ns/early/$(basename "$f")" || fail "early file $(basename "$f") damaged after ENOSPC"
done
cmp "$T/early4m" "$MNT/ns/early/rand4m" || fail "early rand4m damaged after ENOSPC"
for ((j = 1; j < enospc; j++)); do
    assert_eq "$(stat -c %s "$MNT/ns/fill/f$j")" $((4 * 1048576)) "size of fill file f$j written before ENOSPC"
done
ls -l "$MNT/ns/fill" >/dev/null || fail "ls on a full STORE"
df "$MNT" >/dev/null || fail "df on a full STORE"
pass "earlier files intact on a full STORE"

# --- free space, write again ----------------------------------------------------
rm -f "$MNT"/ns/fill/*
check '[ -z "$(ls -A "$MNT/ns/fill")" ]' "fill files still listed after rm"
head -c 8M /dev/urandom >"$T/after8m"
ok=""
for try in 1 2 3 4 5 6 7 8 9 10; do   # allow background space reclamation (<= 10 s)
    if out=$(dd if="$T/after8m" of="$MNT/ns/early/after8m" bs=1M conv=fsync 2>&1); then
        ok=$try
        break
    fi
    sleep 1
done
[ -n "$ok" ] || fail "writing 8 MiB after deleting ~$(( (enospc - 1) * 4 )) MiB of files still fails: $out"
cmp "$T/after8m" "$MNT/ns/early/after8m" || fail "file written after freeing space differs"
pass "space is reusable after rm (attempt $ok)"

# --- everything survives a remount -------------------------------------------------
kv_remount "$STORE" "$MNT"
for f in "$SRC"/*; do
    cmp "$f" "$MNT/ns/early/$(basename "$f")" || fail "early file $(basename "$f") after remount"
done
cmp "$T/early4m" "$MNT/ns/early/rand4m" || fail "early rand4m after remount"
cmp "$T/after8m" "$MNT/ns/early/after8m" || fail "after8m after remount"
kv_umount "$MNT"
umount "$FS"
pass "data intact after remount; tmpfs unmounted"
