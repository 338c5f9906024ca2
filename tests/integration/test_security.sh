#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Who may use a mount: without allow_other only the user who mounted it;
# with allow_other everyone, under the kernel's permission checks
# (default_permissions) on files and on .kvfs/.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_other_user
chmod 755 "$T"   # let the other user reach the mountpoint
MNT=$T/mnt
STORE=$T/store

# 1. Default: nobody but the mounting user gets in (the kernel refuses).
kv_mount "$STORE" "$MNT"
mkdir -p "$MNT/ns/ctx"
echo public >"$MNT/ns/ctx/public"
expect_fail "permission denied" "another user without allow_other" as_nobody stat "$MNT/ns"
expect_fail "permission denied" "another user reading stats without allow_other" \
    as_nobody cat "$MNT/.kvfs/stats"
pass "without allow_other only the mounting user gets in"
kv_umount "$MNT"

# 2. allow_other: permission bits decide, as on any filesystem.
kv_mount "$STORE" "$MNT" allow_other
chmod 755 "$MNT" "$MNT/ns" "$MNT/ns/ctx"
chmod 644 "$MNT/ns/ctx/public"
echo secret >"$MNT/ns/ctx/secret"
chmod 600 "$MNT/ns/ctx/secret"
assert_eq "$(as_nobody cat "$MNT/ns/ctx/public")" public "another user reads a 0644 file"
expect_fail "permission denied" "another user reads a 0600 file" as_nobody cat "$MNT/ns/ctx/secret"
expect_fail "permission denied" "another user writes a 0644 file" \
    as_nobody sh -c "echo x >>'$MNT/ns/ctx/public'"
expect_fail "permission denied" "another user creates in a 0755 directory" \
    as_nobody touch "$MNT/ns/ctx/new"
expect_fail "permission denied" "another user removes from a 0755 directory" \
    as_nobody rm -f "$MNT/ns/ctx/public"
expect_fail "permission denied|not permitted" "another user pins a context it does not own" \
    as_nobody setfattr -n user.kvfs.pin -v 1 "$MNT/ns/ctx"
assert_eq "$(cat "$MNT/ns/ctx/public")" public "the file another user tried to change"
check '[ ! -e "$MNT/ns/ctx/new" ]' "a file another user could not create exists"

# The control files: stats readable by all, evict writable by the owner only.
as_nobody cat "$MNT/.kvfs/stats" | grep -q '^kvfs_files ' || fail "another user cannot read .kvfs/stats"
expect_fail "permission denied" "another user writes .kvfs/evict" \
    as_nobody sh -c "echo 0 >'$MNT/.kvfs/evict'"
expect_fail "permission denied|not permitted|read-only" "another user creates in .kvfs" \
    as_nobody touch "$MNT/.kvfs/x"
expect_fail "" "root creates in .kvfs" touch "$MNT/.kvfs/x"
check '[ "$(as_nobody stat -c %a "$MNT/.kvfs/evict")" = 200 ]' ".kvfs/evict is not mode 0200"

# A directory the owner opens up: the other user's files are its own.
mkdir "$MNT/ns/shared" && chmod 1777 "$MNT/ns/shared"
as_nobody sh -c "echo mine >'$MNT/ns/shared/f'"
assert_eq "$(stat -c %u:%g "$MNT/ns/shared/f")" 65534:65534 "owner of another user's file"
assert_eq "$(as_nobody cat "$MNT/ns/shared/f")" mine "another user's file"
chmod 600 "$MNT/ns/shared/f" 2>/dev/null
expect_fail "not permitted" "another user chmods root's file" as_nobody chmod 666 "$MNT/ns/ctx/public"
kv_assert_alive "$MNT"
pass "allow_other: default_permissions applies to files, directories, xattrs and .kvfs"
kv_umount "$MNT"
