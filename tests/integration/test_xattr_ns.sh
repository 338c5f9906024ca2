#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Extended attributes outside the user namespace (issue 12): kvfs stores
# user.* only. Setting or removing any other name (POSIX ACLs, security.*,
# trusted.*, system.*) fails with EOPNOTSUPP, including an empty POSIX ACL,
# which the kernel sends to the filesystem as a remove (it gave ENODATA);
# reading one gives ENODATA, no such attribute, as for a missing user.*
# name, so ls -l and getfattr stay quiet; the listing holds user.* only.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store
MNT=$T/mnt
kv_mount "$STORE" "$MNT"
mkdir -p "$MNT/ns/ctx"
echo data >"$MNT/ns/ctx/f"
setfattr -n user.app -v v1 "$MNT/ns/ctx/f"

out=$(python3 - "$MNT/ns/ctx/f" "$MNT/ns/ctx" <<'EOF'
import errno, os, struct, sys

def err(f, *a):
    try:
        f(*a)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

# A valid access ACL: user::rw- group::r-- other::r-- (version 2 entries).
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, 0xffffffff)
                                       for t, p in ((1, 6), (4, 4), (0x20, 4)))
NAMES = ("system.posix_acl_access", "system.posix_acl_default", "security.selinux",
         "security.x", "trusted.x", "system.x")
for label, path in zip(("file", "dir"), sys.argv[1:]):
    for n in NAMES:
        # the kernel answers a default ACL on a file itself
        if label == "file" and n == "system.posix_acl_default":
            continue
        print(label, n, "set", err(os.setxattr, path, n, acl))
        print(label, n, "set-empty", err(os.setxattr, path, n, b""))
        print(label, n, "get", err(os.getxattr, path, n))
        print(label, n, "remove", err(os.removexattr, path, n))
    print(label, "list", *sorted(os.listxattr(path)))
EOF
)
want=$(
    for label in file dir; do
        for n in system.posix_acl_access system.posix_acl_default security.selinux \
                 security.x trusted.x system.x; do
            [ "$label:$n" = file:system.posix_acl_default ] && continue
            printf '%s %s %s\n' "$label $n" set ENOTSUP "$label $n" set-empty ENOTSUP \
                "$label $n" get ENODATA "$label $n" remove ENOTSUP
        done
        if [ $label = file ]; then echo "file list user.app"; else echo "dir list"; fi
    done
)
diff <(echo "$want") <(echo "$out") >&2 || fail "xattrs of other namespaces (< expected, > got)"
pass "other namespaces: set and remove EOPNOTSUPP, get ENODATA, not listed"

# The user namespace is untouched by this: set, get, remove, then ENODATA.
assert_eq "$(getfattr --absolute-names --only-values -n user.app "$MNT/ns/ctx/f")" v1 "user.app"
setfattr -x user.app "$MNT/ns/ctx/f"
expect_fail "no such attribute" "user.app after its removal" getfattr --absolute-names -n user.app "$MNT/ns/ctx/f"
expect_fail "no such attribute" "removing user.app twice" setfattr -x user.app "$MNT/ns/ctx/f"
ls -l "$MNT/ns/ctx" >/dev/null
kv_umount "$MNT"
pass "user.*: set, read, removed; a second remove is ENODATA"
