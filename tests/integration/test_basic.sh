#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Basic POSIX behaviour of a kvfs mount: copy real KV files, partial
# overwrite, truncate, append, metadata, symlinks, error cases, statfs.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store          # does not exist yet: kvfs must create it
MNT=$T/mnt
SHADOW=$T/shadow
mkdir -p "$SHADOW"
kv_need_kv_data

kv_mount "$STORE" "$MNT"
check '[ -d "$STORE" ]' "STORE directory was not created"

# --- copy real KV files, compare ------------------------------------------
mkdir -p "$MNT/ns/ctx"
check '[ -d "$MNT/ns/ctx" ]' "mkdir -p ns/ctx"
cp -a "$SRC/." "$MNT/ns/ctx/"
n=0
for f in "$SRC"/*; do
    b=$(basename "$f")
    cmp "$f" "$MNT/ns/ctx/$b" || fail "content of ns/ctx/$b differs after cp -a"
    assert_eq "$(stat -c %s "$MNT/ns/ctx/$b")" "$(stat -c %s "$f")" "st_size of $b"
    assert_eq "$(stat -c %Y "$MNT/ns/ctx/$b")" "$(stat -c %Y "$f")" "mtime of $b preserved by cp -a"
    n=$((n + 1))
done
check '[ "$n" -ge 5 ]' "expected at least 5 files in $SRC"
# ls -l shows the logical sizes
# shellcheck disable=SC2012  # ls -l is what is being tested
diff <(cd "$SRC" && ls -ln | awk 'NR > 1 { print $5, $9 }') \
     <(cd "$MNT/ns/ctx" && ls -ln | awk 'NR > 1 { print $5, $9 }') ||
    fail "ls -l sizes/names on the mount differ from the source"
pass "cp -a of $n KV files, cmp, sizes"

# --- partial overwrite with dd conv=notrunc --------------------------------
F=$MNT/ns/ctx/layer0.k.f16
S=$SHADOW/layer0.k.f16
cp "$SRC/layer0.k.f16" "$S"
head -c 70000 /dev/urandom >"$T/patch"
for off in 0 12345 65535 131000; do        # 131000 + 70000 extends the file
    dd if="$T/patch" of="$F" bs=7000 seek="$off" oflag=seek_bytes conv=notrunc status=none
    dd if="$T/patch" of="$S" bs=7000 seek="$off" oflag=seek_bytes conv=notrunc status=none
    cmp "$S" "$F" || fail "content differs after dd conv=notrunc seek=$off"
    assert_eq "$(stat -c %s "$F")" "$(stat -c %s "$S")" "size after dd seek=$off"
done
assert_eq "$(stat -c %s "$F")" $((131000 + 70000)) "size after writing past EOF"
pass "dd conv=notrunc overwrites"

# --- truncate down / up ------------------------------------------------------
for sz in 300000 100001 1000 131072 0 5000 2000000 65536; do
    truncate -s "$sz" "$F"
    truncate -s "$sz" "$S"
    assert_eq "$(stat -c %s "$F")" "$sz" "st_size after truncate -s $sz"
    cmp "$S" "$F" || fail "content differs after truncate -s $sz (stale data after shrink+grow?)"
done
truncate -s +4097 "$F"; truncate -s +4097 "$S"
cmp "$S" "$F" || fail "content differs after truncate -s +4097"
pass "truncate up/down"

# --- append ------------------------------------------------------------------
A=$MNT/ns/ctx/appended
: >"$A"; : >"$SHADOW/appended"
for i in 1 2 3; do
    cat "$SRC/layer1.v.bf16" >>"$A"
    cat "$SRC/layer1.v.bf16" >>"$SHADOW/appended"
    echo "line $i" >>"$A"
    echo "line $i" >>"$SHADOW/appended"
done
cmp "$SHADOW/appended" "$A" || fail "content differs after appends (>>)"
assert_eq "$(stat -c %s "$A")" $((3 * (131072 + 7))) "size after appends"
pass "append"

# --- metadata: chmod, chown, touch -d ---------------------------------------
M=$MNT/ns/ctx/layer0.v.f16
chmod 640 "$M"
assert_eq "$(stat -c %a "$M")" 640 "mode after chmod 640"
chmod 4755 "$M"
assert_eq "$(stat -c %a "$M")" 4755 "mode after chmod 4755"
chmod 600 "$M"
assert_eq "$(stat -c %a "$M")" 600 "mode after chmod 600"
chown 1234:5678 "$M"
assert_eq "$(stat -c %u:%g "$M")" 1234:5678 "owner after chown 1234:5678"
chown 0:0 "$M"
assert_eq "$(stat -c %u:%g "$M")" 0:0 "owner after chown 0:0"
touch -m -d '2001-02-03 04:05:06 UTC' "$M"
assert_eq "$(stat -c %Y "$M")" 981173106 "mtime after touch -m -d"
touch -a -d '2002-03-04 05:06:07 UTC' "$M"
assert_eq "$(stat -c %X "$M")" 1015218367 "atime after touch -a -d"
assert_eq "$(stat -c %Y "$M")" 981173106 "mtime unchanged by touch -a"
touch -m -d '@1500000000.123456789' "$M"
assert_eq "$(stat -c %.9Y "$M")" 1500000000.123456789 "mtime with nanoseconds"
cmp "$SRC/layer0.v.f16" "$M" || fail "content changed by chmod/chown/touch"
mkdir "$MNT/ns/dirmeta"
chmod 705 "$MNT/ns/dirmeta"
assert_eq "$(stat -c %a "$MNT/ns/dirmeta")" 705 "directory mode after chmod 705"
chown 42:43 "$MNT/ns/dirmeta"
assert_eq "$(stat -c %u:%g "$MNT/ns/dirmeta")" 42:43 "directory owner after chown"
t0=$(stat -c %Y "$MNT/ns/ctx/layer1.k.f16")
sleep 1.1
echo more >>"$MNT/ns/ctx/layer1.k.f16"
t1=$(stat -c %Y "$MNT/ns/ctx/layer1.k.f16")
check '[ "$t1" -gt "$t0" ]' "write did not advance mtime ($t0 -> $t1)"
pass "chmod/chown/touch"

# --- symlinks ----------------------------------------------------------------
ln -s layer1.v.bf16 "$MNT/ns/ctx/link"
assert_eq "$(readlink "$MNT/ns/ctx/link")" layer1.v.bf16 "readlink"
assert_eq "$(stat -c %F "$MNT/ns/ctx/link")" "symbolic link" "lstat type of symlink"
cmp "$SRC/layer1.v.bf16" "$MNT/ns/ctx/link" || fail "reading through a symlink"
ln -s "/nonexistent/target/$(printf 'x%.0s' {1..200})" "$MNT/ns/dangling"
assert_eq "$(readlink "$MNT/ns/dangling")" "/nonexistent/target/$(printf 'x%.0s' {1..200})" "readlink of a long dangling symlink"
expect_fail "No such file" "open through a dangling symlink" cat "$MNT/ns/dangling"
pass "symlink/readlink"

# --- error cases ---------------------------------------------------------------
expect_fail "not empty" "rmdir of a non-empty directory" rmdir "$MNT/ns/ctx"
check '[ -f "$MNT/ns/ctx/layer0.k.bf16" ]' "non-empty dir damaged by failed rmdir"
expect_fail "Operation not permitted" "hard link (ln) must fail with EPERM" \
    ln "$MNT/ns/ctx/layer0.k.bf16" "$MNT/ns/ctx/hardlink"
check '[ ! -e "$MNT/ns/ctx/hardlink" ]' "failed ln left a hardlink entry"
long=$(printf 'a%.0s' {1..256})
ok255=$(printf 'b%.0s' {1..255})
expect_fail "File name too long" "create with a 256-byte name" touch "$MNT/ns/$long"
expect_fail "File name too long" "mkdir with a 256-byte name" mkdir "$MNT/ns/$long"
echo x >"$MNT/ns/$ok255" || fail "create with a 255-byte name must work"
assert_eq "$(cat "$MNT/ns/$ok255")" x "content of the file with a 255-byte name"
rm "$MNT/ns/$ok255"
expect_fail "No such file" "open of a missing file" cat "$MNT/ns/ctx/missing"
expect_fail "exists" "mkdir of an existing directory" mkdir "$MNT/ns/ctx"
expect_fail "Not a directory" "mkdir below a regular file" mkdir "$MNT/ns/ctx/layer0.k.bf16/sub"
mkdir "$MNT/ns/empty"
rmdir "$MNT/ns/empty"
check '[ ! -e "$MNT/ns/empty" ]' "rmdir of an empty directory"
rm "$MNT/ns/ctx/appended"
check '[ ! -e "$MNT/ns/ctx/appended" ]' "unlink"
expect_fail "No such file" "stat of an unlinked file" stat "$MNT/ns/ctx/appended"
# The kernel caches absent names inside a context: made again at once, by
# create, mkdir, symlink and rename, each one is there.
echo again >"$MNT/ns/ctx/appended"
assert_eq "$(cat "$MNT/ns/ctx/appended")" again "a file made again right after its name was found absent"
for n in d s r; do expect_fail "No such file" "stat of missing $n" stat "$MNT/ns/ctx/new-$n"; done
mkdir "$MNT/ns/ctx/new-d"
ln -s appended "$MNT/ns/ctx/new-s"
mv "$MNT/ns/ctx/appended" "$MNT/ns/ctx/new-r"
check '[ -d "$MNT/ns/ctx/new-d" ] && [ "$(cat "$MNT/ns/ctx/new-r")" = again ] && [ -L "$MNT/ns/ctx/new-s" ]' \
    "names made right after they were found absent"
expect_fail "No such file" "stat of a renamed file's old name" stat "$MNT/ns/ctx/appended"
rm -r "$MNT/ns/ctx/new-d" "$MNT/ns/ctx/new-s" "$MNT/ns/ctx/new-r"
pass "error cases (ENOTEMPTY, EPERM on link, ENAMETOOLONG, ...)"

# --- statfs --------------------------------------------------------------------
out=$(df -P "$MNT") || fail "df on the mount failed"
grep -q " $MNT\$" <<<"$out" || fail "df output does not show the mount: $out"
blocks=$(stat -f -c %b "$MNT")
bsize=$(stat -f -c %S "$MNT")
check '[ "$blocks" -gt 0 ] && [ "$bsize" -gt 0 ]' "statfs reports no capacity (blocks=$blocks bsize=$bsize)"
out=$(df -i "$MNT") || fail "df -i on the mount failed"
pass "df/statfs"

# --- everything still intact, clean unmount -------------------------------
for f in "$SRC"/layer1.*; do
    b=$(basename "$f")
    [ "$b" = layer1.k.f16 ] && continue
    cmp "$f" "$MNT/ns/ctx/$b" || fail "ns/ctx/$b changed"
done
kv_assert_alive
kv_umount "$MNT"
pass "clean unmount"
