#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Persistence across unmount/remount, kvfsctl info, the single-daemon lock on
# a STORE, daemonized mode, and refusal of foreign or damaged stores (which
# must be left byte-for-byte unmodified).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_kv_data
STORE=$T/store
MNT=$T/mnt
mkdir "$STORE"                 # an existing *empty* directory is a fine STORE

# Metadata listing: type, mode, owner, size, mtime (ns), symlink target.
meta_of() { (cd "$1" && find . -path ./.kvfs -prune -o -printf '%y %m %u:%g %s %T@ %p -> %l\n' | LC_ALL=C sort); }
xattrs_of() { (cd "$1" && getfattr --absolute-names -R -d -m '^user\.' -e hex . 2>/dev/null | grep -v '^$' | LC_ALL=C sort); }
sums_of() { (cd "$1" && find . -path ./.kvfs -prune -o -type f -exec sha256sum {} + | LC_ALL=C sort -k2); }

# --- phase 1: two contexts of regular files, kvfsctl info ----------------
kv_mount "$STORE" "$MNT"
mkdir -p "$MNT/ns/ctxA" "$MNT/ns/ctxB"
cp -a "$SRC/." "$MNT/ns/ctxA/"
cp "$SRC"/layer1.* "$MNT/ns/ctxB/"
head -c 300000 /dev/urandom >"$T/rand"
cp "$T/rand" "$MNT/ns/ctxB/rand"
nfiles=$(find "$SRC" -type f | wc -l)
nfiles=$((nfiles + 4 + 1))
logical=$(( $(find "$SRC" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }') + 4 * 131072 + 300000 ))
# published at close: visible in the index while still mounted
assert_eq "$(kv_info "$STORE" files)" "$nfiles" "kvfsctl info files (mounted)"
kv_umount "$MNT"
assert_eq "$(kv_info "$STORE" format_version)" 1 "kvfsctl info format_version"
assert_eq "$(kv_info "$STORE" files)" "$nfiles" "kvfsctl info files"
assert_eq "$(kv_info "$STORE" contexts)" 2 "kvfsctl info contexts"
assert_eq "$(kv_info "$STORE" logical_bytes)" "$logical" "kvfsctl info logical_bytes"
stored=$(kv_info "$STORE" stored_bytes)
check '[ "$stored" -gt 300000 ] && [ "$stored" -le "$((logical * 105 / 100 + 65536))" ]' \
    "kvfsctl info stored_bytes=$stored implausible for logical_bytes=$logical"
ratio=$(kv_info "$STORE" ratio)
check '[[ "$ratio" =~ ^[0-9]+\.[0-9][0-9]$ ]]' "kvfsctl info ratio '$ratio' is not X.XX"
check 'awk -v r="$ratio" -v l="$logical" -v s="$stored" "BEGIN { e = l / s; exit !(r >= e - 0.011 && r <= e + 0.011) }"' \
    "ratio $ratio does not match logical/stored = $logical/$stored"
pass "kvfsctl info: $nfiles files, 2 contexts, $logical logical, $stored stored, ratio $ratio"

# --- phase 2: richer metadata, then remount and compare everything ----------
kv_mount "$STORE" "$MNT"
sums_of "$MNT" >"$T/sums.0"
diff <(cd "$SRC" && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2 | sed 's| \./| ./ns/ctxA/|') \
     <(grep ' ./ns/ctxA/' "$T/sums.0") || fail "ctxA content after the first remount"
cmp "$T/rand" "$MNT/ns/ctxB/rand" || fail "ctxB/rand after remount"
chmod 600 "$MNT/ns/ctxA/layer0.k.f16"
chmod 751 "$MNT/ns/ctxB"
chown 1000:1000 "$MNT/ns/ctxB/layer1.k.f16"
touch -m -d '2001-02-03 04:05:06.5 UTC' "$MNT/ns/ctxA/meta.json"
touch -m -d '1999-12-31 23:59:59 UTC' "$MNT/ns/ctxB"
setfattr -n user.kvfs.pin -v 1 "$MNT/ns/ctxA"
setfattr -n user.model -v llama-3.1-8b "$MNT/ns/ctxA/layer0.v.f16"
setfattr -n user.bin -v 0x000102ff "$MNT/ns/ctxB/rand"
ln -s ctxA/layer0.k.f16 "$MNT/ns/link"
mkdir "$MNT/ns/emptydir"
: >"$MNT/ns/emptyfile"
truncate -s 5000000 "$MNT/ns/sparse"
printf 'tail' | dd of="$MNT/ns/sparse" bs=1 seek=4000000 conv=notrunc status=none
truncate -s 4000004 "$T/sparse.ref"
printf 'tail' | dd of="$T/sparse.ref" bs=1 seek=4000000 conv=notrunc status=none
truncate -s 5000000 "$T/sparse.ref"
meta_of "$MNT" >"$T/meta.1"
xattrs_of "$MNT" >"$T/xattrs.1"
sums_of "$MNT" >"$T/sums.1"
check 'grep -q "user.model" "$T/xattrs.1"' "xattr listing is missing user.model"
kv_umount "$MNT"

kv_mount "$STORE" "$MNT"
diff "$T/meta.1" <(meta_of "$MNT") || fail "modes/owners/sizes/mtimes/links differ after remount"
diff "$T/xattrs.1" <(xattrs_of "$MNT") || fail "xattrs differ after remount"
diff "$T/sums.1" <(sums_of "$MNT") || fail "file contents differ after remount"
cmp "$T/sparse.ref" "$MNT/ns/sparse" || fail "sparse file after remount"
assert_eq "$(readlink "$MNT/ns/link")" ctxA/layer0.k.f16 "symlink target after remount"
assert_eq "$(stat -c %.9Y "$MNT/ns/ctxA/meta.json")" 981173106.500000000 "mtime with sub-second part after remount"
pass "contents, metadata, xattrs, symlinks survive remount"

# --- the STORE lock ------------------------------------------------------------
kv_info "$STORE" format_version >/dev/null   # kvfsctl info works while mounted
kv_try "$STORE" "$T/mnt-second"
check '[ "$KV_TRY_RC" -ne 0 ]' "second kvfs on a mounted STORE exited 0"
check 'grep -qi "in use" <<<"$KV_TRY_OUT"' "second kvfs on the same STORE: message lacks 'in use': $KV_TRY_OUT"
kv_try "$STORE" "$T/mnt-second" -f
check '[ "$KV_TRY_RC" -ne 0 ] && grep -qi "in use" <<<"$KV_TRY_OUT"' \
    "second kvfs -f on the same STORE: rc=$KV_TRY_RC, output: $KV_TRY_OUT"
kv_assert_alive
diff "$T/sums.1" <(sums_of "$MNT") || fail "first mount's data changed by the refused second daemon"
echo after-lock >"$MNT/ns/written-after"
kv_umount "$MNT"
pass "second daemon on the same STORE refused with 'in use'"

# --- daemonized mode (no -f): returns once mounted --------------------------------
out=$(timeout 20 "$KVFS" "$STORE" "$MNT" 2>&1) || fail "kvfs without -f failed: $out"
kv_is_mounted "$MNT" || fail "kvfs without -f returned before $MNT was mounted"
kv_adopt "$MNT"
assert_eq "$(cat "$MNT/ns/written-after")" after-lock "file written last session"
diff "$T/sums.1" <(sums_of "$MNT" | grep -v written-after) || fail "contents in daemonized mode"
kv_umount "$MNT"
pass "daemonized mode"

# --- a foreign, non-empty directory is refused and left alone --------------
FOREIGN=$T/foreign
mkdir -p "$FOREIGN/sub"
head -c 5000 /dev/urandom >"$FOREIGN/data.bin"
echo "my notes" >"$FOREIGN/notes.txt"
echo "nested" >"$FOREIGN/sub/file"
touch -d '2010-01-01' "$FOREIGN/sub" "$FOREIGN"
kv_snapshot "$FOREIGN" >"$T/snap.foreign"
kv_try "$FOREIGN" "$T/mnt-foreign" -f
check '[ "$KV_TRY_RC" -ne 0 ]' "kvfs accepted a foreign non-empty directory as STORE"
check '[ -n "$KV_TRY_OUT" ]' "kvfs refused a foreign STORE without any message"
diff "$T/snap.foreign" <(kv_snapshot "$FOREIGN") || fail "foreign directory was modified by kvfs"
log "foreign STORE refused: $KV_TRY_OUT"
pass "foreign directory refused, unmodified"

# --- a damaged kvfs.db is refused and left alone --------------------------------
check '[ -f "$STORE/kvfs.db" ]' "STORE has no kvfs.db (contract: STORE/kvfs.db is the index)"
damage() {   # damage NAME HOW
    local d=$T/$1
    cp -a "$STORE" "$d"
    case $2 in
        all) dd if=/dev/urandom of="$d/kvfs.db" bs=4096 count=$(( ($(stat -c %s "$d/kvfs.db") + 4095) / 4096 )) conv=notrunc status=none ;;
        header) dd if=/dev/urandom of="$d/kvfs.db" bs=100 count=1 conv=notrunc status=none ;;
        text) printf 'this is not a database\n' >"$d/kvfs.db" ;;
    esac
    kv_snapshot "$d" >"$T/snap.$1"
    kv_try "$d" "$T/mnt-$1" -f
    check '[ "$KV_TRY_RC" -ne 0 ]' "kvfs accepted a STORE whose kvfs.db is garbage ($2)"
    check '[ -n "$KV_TRY_OUT" ]' "kvfs refused a damaged STORE ($2) without any message"
    diff "$T/snap.$1" <(kv_snapshot "$d") || fail "damaged STORE ($2) was modified by kvfs"
    log "damaged kvfs.db ($2) refused: $KV_TRY_OUT"
}
damage bad-all all
damage bad-header header
damage bad-text text
pass "damaged kvfs.db refused, unmodified"

# the original store is still fine
kv_mount "$STORE" "$MNT"
diff "$T/sums.1" <(sums_of "$MNT" | grep -v written-after) || fail "original STORE after the damage tests"
kv_umount "$MNT"
pass "original store intact"
