#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Operator tools on a kvfs mount: find, xattrs (getfattr/setfattr), rsync
# between two kvfs mounts and from a plain directory, tar, rm -rf and the
# effect on kvfsctl info.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SRC=$KV_DATA/gpl3
[ -f "$SRC/layer0.k.f16" ] || fail "KV_DATA=$KV_DATA has no gpl3/layer0.k.f16"
STORE=$T/store
MNT=$T/mnt
STORE2=$T/store2
MNT2=$T/mnt2

# List regular files below DIR, relative, sorted; the virtual control dir
# <mnt>/.kvfs (see DESIGN.md) is not part of the user's tree.
files_of() { (cd "$1" && find . -path ./.kvfs -prune -o -type f -print | LC_ALL=C sort); }

# Build the same tree in a plain directory and on the mount.
build_tree() {
    local r=$1 ns ctx
    for ns in llama-8b qwen-7b; do
        for ctx in 3f2a9c01 77aa0b12; do
            mkdir -p "$r/$ns/$ctx"
            cp "$SRC"/layer0.* "$SRC/meta.json" "$r/$ns/$ctx/"
        done
    done
    mkdir -p "$r/flat"
    cp "$SRC/layer1.v.bf16" "$r/flat/blk-0001"
    printf 'tokens %s\n' {1..500} >"$r/flat/tokens.txt"
}

kv_mount "$STORE" "$MNT"
build_tree "$T/plain"
build_tree "$MNT"

# --- find ------------------------------------------------------------------
diff <(files_of "$T/plain") <(files_of "$MNT") || fail "find -type f on the mount differs from the plain tree"
assert_eq "$(files_of "$MNT" | wc -l)" 22 "number of files found"
assert_eq "$(find "$MNT" -name 'layer0.v.*' -type f | wc -l)" 8 "find -name layer0.v.*"
assert_eq "$(find "$MNT" -path "$MNT/.kvfs" -prune -o -type d -name '77aa*' -print | wc -l)" 2 "find -type d -name"
assert_eq "$(find "$MNT/llama-8b" -type f -size +100k | wc -l)" 8 "find -size +100k"
assert_eq "$(find "$MNT/flat" -type f -size -10k -name 'tokens*' | wc -l)" 1 "find -size -10k"
diff <(cd "$T/plain" && find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2) \
     <(cd "$MNT" && find . -path ./.kvfs -prune -o -type f -exec sha256sum {} + | LC_ALL=C sort -k2) ||
    fail "find -exec sha256sum differs"
diff -r -x .kvfs "$T/plain" "$MNT" || fail "diff -r plain tree vs mount"
pass "find"

# --- xattrs ----------------------------------------------------------------
F=$MNT/llama-8b/3f2a9c01/layer0.k.f16
setfattr -n user.app.test -v hello "$F"
assert_eq "$(getfattr --absolute-names --only-values -n user.app.test "$F")" hello "getfattr --absolute-names of user.app.test"
setfattr -n user.second -v 0x00ff10ee "$F"
assert_eq "$(getfattr --absolute-names -e hex -n user.second "$F" | sed -n 's/^user.second=//p')" 0x00ff10ee "binary xattr value"
big=v$(head -c 3000 /dev/urandom | base64 -w0)   # "v": a leading 0x/0s would make setfattr decode it
setfattr -n user.big -v "$big" "$F"
assert_eq "$(getfattr --absolute-names --only-values -n user.big "$F")" "$big" "3 KiB xattr value"
setfattr -n user.empty "$F"
assert_eq "$(getfattr --absolute-names --only-values -n user.empty "$F" | wc -c)" 0 "empty xattr value"
setfattr -n user.app.test -v replaced "$F"
assert_eq "$(getfattr --absolute-names --only-values -n user.app.test "$F")" replaced "replaced xattr value"
names=$(getfattr --absolute-names -d -m '^user\.' "$F" | sed -n 's/^\(user\.[^=]*\).*/\1/p' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "$names" "user.app.test user.big user.empty user.second " "listed xattr names"
setfattr -x user.second "$F"
expect_fail "No such attribute" "getfattr --absolute-names of a removed xattr" getfattr --absolute-names -n user.second "$F"
expect_fail "No such attribute" "removing a missing xattr" setfattr -x user.nothere "$F"
names=$(getfattr --absolute-names -d -m '^user\.' "$F" | sed -n 's/^\(user\.[^=]*\).*/\1/p' | LC_ALL=C sort | tr '\n' ' ')
assert_eq "$names" "user.app.test user.big user.empty " "xattr names after remove"
setfattr -n user.ctx.note -v dir-attr "$MNT/llama-8b/3f2a9c01"
assert_eq "$(getfattr --absolute-names --only-values -n user.ctx.note "$MNT/llama-8b/3f2a9c01")" dir-attr "xattr on a directory"
# the file's data is untouched by xattr traffic
cmp "$SRC/layer0.k.f16" "$F" || fail "content changed by xattr operations"
# trusted.* may be refused or allowed; the daemon must survive either way
setfattr -n trusted.x -v 1 "$F" 2>/dev/null || log "setfattr trusted.x refused (fine)"
getfattr --absolute-names -n trusted.x "$F" >/dev/null 2>&1 || true
setfattr -x trusted.x "$F" 2>/dev/null || true
kv_assert_alive
cmp "$SRC/layer0.k.f16" "$F" || fail "content changed after trusted.* xattr attempt"
assert_eq "$(getfattr --absolute-names --only-values -n user.app.test "$F")" replaced "user xattr after trusted.* attempt"
pass "xattrs"

# --- rsync kvfs -> kvfs, and plain -> kvfs --------------------------------------
kv_mount "$STORE2" "$MNT2"
rsync -aX "$MNT/" "$MNT2/copy/" --exclude=/.kvfs
diff -r "$T/plain" "$MNT2/copy" || fail "diff -r after rsync -a kvfs -> kvfs"
diff <(files_of "$MNT") <(files_of "$MNT2/copy") || fail "file lists differ after rsync kvfs -> kvfs"
assert_eq "$(getfattr --absolute-names --only-values -n user.app.test "$MNT2/copy/llama-8b/3f2a9c01/layer0.k.f16")" replaced \
    "xattr copied by rsync -X"
# a second rsync must find nothing to do (sizes, mtimes, modes all preserved)
changes=$(rsync -ai --dry-run "$MNT/" "$MNT2/copy/" --exclude=/.kvfs)
assert_eq "$changes" "" "rsync -a dry-run after a full copy (metadata not preserved?)"

mkdir -p "$T/plain2/sub/deeper"
cp "$SRC/layer1.k.bf16" "$T/plain2/sub/deeper/k"
chmod 600 "$T/plain2/sub/deeper/k"
touch -d '2020-01-02 03:04:05' "$T/plain2/sub/deeper/k"
printf 'small\n' >"$T/plain2/small"
: >"$T/plain2/empty"
ln -s sub/deeper/k "$T/plain2/link"
head -c 3000000 /dev/urandom >"$T/plain2/rand3m"
rsync -a "$T/plain2/" "$MNT2/plain2/"
diff -r --no-dereference "$T/plain2" "$MNT2/plain2" || fail "diff -r after rsync -a plain -> kvfs"
assert_eq "$(stat -c '%a %Y %s' "$MNT2/plain2/sub/deeper/k")" "$(stat -c '%a %Y %s' "$T/plain2/sub/deeper/k")" \
    "mode/mtime/size preserved by rsync -a"
assert_eq "$(readlink "$MNT2/plain2/link")" sub/deeper/k "symlink copied by rsync -a"
changes=$(rsync -ai --dry-run "$T/plain2/" "$MNT2/plain2/")
assert_eq "$changes" "" "rsync -a dry-run after plain -> kvfs copy"
# update in place: rsync --inplace of a modified file
dd if=/dev/urandom of="$T/plain2/rand3m" bs=4096 count=3 seek=100 conv=notrunc status=none
rsync -a -I --inplace --no-whole-file "$T/plain2/" "$MNT2/plain2/"
cmp "$T/plain2/rand3m" "$MNT2/plain2/rand3m" || fail "rsync --inplace delta update"
pass "rsync"

# --- tar round trip ----------------------------------------------------------------
mkdir "$MNT2/untar"
tar -C "$T/plain" -cf - . | tar -C "$MNT2/untar" -xf -
diff -r "$T/plain" "$MNT2/untar" || fail "diff -r after tar extract into kvfs"
tar -C "$MNT2/untar" -cf - . | tar -tf - | LC_ALL=C sort >"$T/tarlist"
check 'grep -qx "./llama-8b/3f2a9c01/layer0.k.f16" "$T/tarlist"' "tar from kvfs lists the files"
pass "tar"

# --- parallel writers and readers (engines write a context's layers at once) --
mkdir -p "$T/par" "$MNT2/par/ctx"
for i in $(seq -w 1 40); do
    head -c $(( (10#$i * 37813) % 2500000 + 1 )) /dev/urandom >"$T/par/layer.$i"
done
find "$T/par" -type f -printf '%f\n' | xargs -P 8 -I{} cp "$T/par/{}" "$MNT2/par/ctx/{}"
diff -r "$T/par" "$MNT2/par/ctx" || fail "files written by 8 parallel cp processes differ"
want=$(cat "$T"/par/* | sha256sum)
pids=()
for i in 1 2 3 4; do
    (cat "$MNT2"/par/ctx/* | sha256sum >"$T/par.sum.$i") &
    pids+=($!)
done
wait "${pids[@]}"     # never a bare `wait`: the kvfs daemons are our children too
for i in 1 2 3 4; do
    assert_eq "$(cat "$T/par.sum.$i")" "$want" "concurrent reader $i"
done
kv_umount "$MNT2"
pass "parallel writers and readers"

# --- rm -rf and kvfsctl info ------------------------------------------------------------
files_before=$(kv_info "$STORE" files)
assert_eq "$files_before" 22 "kvfsctl info files (mounted)"
stored_before=$(kv_info "$STORE" stored_bytes)
check '[ "$stored_before" -gt 0 ]' "stored_bytes is 0 with 22 files present"
rm -rf "$MNT/llama-8b"
check '[ ! -e "$MNT/llama-8b" ]' "rm -rf left the namespace behind"
assert_eq "$(files_of "$MNT" | wc -l)" 12 "files left after rm -rf of one namespace"
rm -rf "${MNT:?}"/qwen-7b "${MNT:?}"/flat
assert_eq "$(cd "$MNT" && find . -mindepth 1 -maxdepth 1 ! -name .kvfs | wc -l)" 0 "entries left after rm -rf of everything"
assert_eq "$(find "$MNT" -mindepth 1 -maxdepth 1 ! -name .kvfs -printf x)" "" "ls -A of the emptied mount"
kv_umount "$MNT"
assert_eq "$(kv_info "$STORE" files)" 0 "kvfsctl info files after rm -rf"
assert_eq "$(kv_info "$STORE" logical_bytes)" 0 "kvfsctl info logical_bytes after rm -rf"
stored_after=$(kv_info "$STORE" stored_bytes)
assert_eq "$stored_after" 0 "kvfsctl info stored_bytes after rm -rf (was $stored_before)"
kv_mount "$STORE" "$MNT"
assert_eq "$(find "$MNT" -mindepth 1 -maxdepth 1 ! -name .kvfs -printf x)" "" "mount is empty after remount"
kv_umount "$MNT"
pass "rm -rf and kvfsctl info"
