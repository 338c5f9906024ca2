#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# rename(2) of files and directories: publish-by-rename of a context,
# replacing files and empty dirs, refusing non-empty dirs, open files that
# get renamed/replaced/unlinked, and persistence of all of it.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store
MNT=$T/mnt
kv_need_kv_data

# exact rename(2), no mv(1) heuristics (mv moves *into* an existing dir)
pyrename() { python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$1" "$2"; }

# same_tree DIR: DIR holds exactly the files of $SRC with the same content
same_tree() {
    local d=$1
    diff <(cd "$SRC" && find . | LC_ALL=C sort) <(cd "$d" && find . | LC_ALL=C sort) ||
        fail "$d does not list the same entries as $SRC"
    diff -r "$SRC" "$d" || fail "$d content differs from $SRC"
}

kv_mount "$STORE" "$MNT"

# --- publish a context by renaming its temp directory ----------------------
mkdir -p "$MNT/ns/.tmp-XYZ"
cp "$SRC"/* "$MNT/ns/.tmp-XYZ/"
mv "$MNT/ns/.tmp-XYZ" "$MNT/ns/ctx"
check '[ ! -e "$MNT/ns/.tmp-XYZ" ]' "old temp dir still visible after rename"
assert_eq "$(cd "$MNT/ns" && find . -mindepth 1 -maxdepth 1 | LC_ALL=C sort | tr '\n' ' ')" "./ctx " "entries of ns after publish"
same_tree "$MNT/ns/ctx"
expect_fail "No such file" "old path after directory rename" cat "$MNT/ns/.tmp-XYZ/meta.json"
pass "publish by directory rename"

# --- publish over an existing empty directory -------------------------------
mkdir "$MNT/ns/ctx2" "$MNT/ns/.tmp-2"
cp "$SRC"/* "$MNT/ns/.tmp-2/"
pyrename "$MNT/ns/.tmp-2" "$MNT/ns/ctx2" || fail "rename of a dir over an empty dir"
check '[ ! -e "$MNT/ns/.tmp-2" ]' "source dir still exists after rename over empty dir"
same_tree "$MNT/ns/ctx2"
pass "rename dir over empty dir"

# --- rename over a non-empty directory must fail ------------------------------
mkdir "$MNT/ns/.tmp-3"
echo new >"$MNT/ns/.tmp-3/x"
expect_fail "Directory not empty|File exists" "rename of a dir over a non-empty dir" \
    pyrename "$MNT/ns/.tmp-3" "$MNT/ns/ctx"
same_tree "$MNT/ns/ctx"
assert_eq "$(cat "$MNT/ns/.tmp-3/x")" new "source dir after refused rename"
pass "rename over non-empty dir refused"

# --- type mismatches ------------------------------------------------------------
expect_fail "Is a directory" "rename of a file over a directory" \
    pyrename "$MNT/ns/.tmp-3/x" "$MNT/ns/ctx2"
expect_fail "Not a directory" "rename of a directory over a file" \
    pyrename "$MNT/ns/.tmp-3" "$MNT/ns/ctx/meta.json"
expect_fail "Invalid argument" "rename of a directory into its own subdirectory" \
    pyrename "$MNT/ns/ctx2" "$MNT/ns/ctx2/sub"
expect_fail "No such file" "rename of a missing file" \
    pyrename "$MNT/ns/missing" "$MNT/ns/other"
pyrename "$MNT/ns/ctx/meta.json" "$MNT/ns/ctx/meta.json"
cmp "$SRC/meta.json" "$MNT/ns/ctx/meta.json" || fail "rename(x, x) changed x"
pass "rename error cases"

# --- rename a file over an existing file, while the victim is open -----------
D=$MNT/ns/files
mkdir "$D"
cp "$SRC/layer0.k.f16" "$D/a"
cp "$SRC/layer1.v.bf16" "$D/b"
exec 3<"$D/b"
pyrename "$D/a" "$D/b"
check '[ ! -e "$D/a" ]' "source file still exists after rename over a file"
cmp "$SRC/layer0.k.f16" "$D/b" || fail "replaced file does not have the new content"
assert_eq "$(stat -c %s "$D/b")" 131072 "size of the replaced file"
cmp "$SRC/layer1.v.bf16" <(cat <&3) || fail "fd open on the replaced file no longer reads its old bytes"
exec 3<&-
pass "rename file over file (victim open)"

# --- rename a file while it is open for reading --------------------------------
cp "$SRC/layer0.v.f16" "$D/r"
exec 4<"$D/r"
head -c 1000 <&4 >/dev/null           # read a bit before the rename
mv "$D/r" "$D/r2"
cmp <(tail -c +1001 "$SRC/layer0.v.f16") <(cat <&4) || fail "fd open across rename reads wrong bytes"
exec 4<&-
cmp "$SRC/layer0.v.f16" "$D/r2" || fail "renamed file content"
# ... and in another process, across a directory rename and a move to another dir
mkdir "$MNT/ns2"
python3 - "$D/r2" "$MNT/ns/files" "$MNT/ns2/moved" "$SRC/layer0.v.f16" <<'EOF' || fail "reader across directory rename"
import os, sys
path, d, dnew, ref = sys.argv[1:]
fd = os.open(path, os.O_RDONLY)
os.rename(d, dnew)                      # the whole directory moves
data = b""
while True:
    b = os.read(fd, 65536)
    if not b:
        break
    data += b
os.close(fd)
if data != open(ref, "rb").read():
    sys.exit("reader saw wrong bytes after the directory rename")
EOF
D=$MNT/ns2/moved
cmp "$SRC/layer0.v.f16" "$D/r2" || fail "file content after directory move across namespaces"
check '[ ! -e "$MNT/ns/files" ]' "directory still at old path after move to another namespace"
pass "rename while open for reading"

# --- rename while open for writing: close publishes at the new path -----------
mkdir "$MNT/ns/.tmp-w"
exec 5>"$MNT/ns/.tmp-w/layer"
cat "$SRC/layer1.k.f16" >&5
mv "$MNT/ns/.tmp-w" "$MNT/ns/ctxw"
cat "$SRC/layer1.k.bf16" >&5
exec 5>&-
cmp <(cat "$SRC/layer1.k.f16" "$SRC/layer1.k.bf16") "$MNT/ns/ctxw/layer" ||
    fail "file written across a rename of its directory has wrong content"
check '[ ! -e "$MNT/ns/.tmp-w" ]' "temp dir reappeared after close"
pass "rename while open for writing"

# --- unlink while open ------------------------------------------------------------
cp "$SRC/layer1.v.f16" "$MNT/ns/ctxw/gone"
exec 6<"$MNT/ns/ctxw/gone"
rm "$MNT/ns/ctxw/gone"
check '[ ! -e "$MNT/ns/ctxw/gone" ]' "unlinked file still visible"
cmp "$SRC/layer1.v.f16" <(cat <&6) || fail "fd open on an unlinked file reads wrong bytes"
exec 6<&-
pass "unlink while open"

# --- everything persists --------------------------------------------------------
kv_assert_alive
expected=$(cd "$MNT" && find . | LC_ALL=C sort)
kv_remount "$STORE" "$MNT"
assert_eq "$(cd "$MNT" && find . | LC_ALL=C sort)" "$expected" "tree after remount"
same_tree "$MNT/ns/ctx"
same_tree "$MNT/ns/ctx2"
cmp "$SRC/layer0.k.f16" "$MNT/ns2/moved/b" || fail "replaced file after remount"
cmp "$SRC/layer0.v.f16" "$MNT/ns2/moved/r2" || fail "renamed file after remount"
cmp <(cat "$SRC/layer1.k.f16" "$SRC/layer1.k.bf16") "$MNT/ns/ctxw/layer" || fail "ctxw/layer after remount"
kv_umount "$MNT"
pass "renames persist across remount"
