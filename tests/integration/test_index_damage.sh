#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# A damaged index (issue 12): one bad page of kvfs.db must give I/O errors
# through the mount, never an empty directory; the mount's background
# quick_check logs it; `kvfsctl fsck` reports it (exit 1, says to rebuild)
# instead of "clean"; `kvfsctl rebuild` recovers the tree. Also: a store of
# schema 2 gets schemas 3 and 4 (dentry_by_parent, the TTL indexes) at its
# next mount, and lists a directory of several readdir batches completely.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 not installed"
STORE=$T/store
MNT=$T/mnt
DB=$STORE/kvfs.db

# corrupt NAME...: with the store unmounted, fill the root page of each
# named table or index of kvfs.db with 0xff (an invalid page type), after
# copying the write-ahead log into the file.
corrupt() {
    python3 - "$DB" "$@" <<'EOF'
import sqlite3, sys
path, names = sys.argv[1], sys.argv[2:]
db = sqlite3.connect(path)
db.execute('PRAGMA wal_checkpoint(TRUNCATE)')
psize = db.execute('PRAGMA page_size').fetchone()[0]
roots = [db.execute('SELECT rootpage FROM sqlite_master WHERE name=?', (n,)).fetchone()[0]
         for n in names]
db.close()
with open(path, 'r+b') as f:
    for r in roots:
        f.seek((r - 1) * psize)
        f.write(b'\xff' * psize)
EOF
}

# count_e DIR: entries e* of DIR, by readdir alone (a glob).
count_e() { local a; shopt -s nullglob; a=("$1"/e*); shopt -u nullglob; echo "${#a[@]}"; }

# --- a tree: contexts, and a directory of several readdir batches --------
kv_mount "$STORE" "$MNT"
mkdir -p "$MNT/ns/ctx1" "$MNT/ns/ctx2" "$MNT/big"
echo one >"$MNT/ns/ctx1/f"
echo two >"$MNT/ns/ctx2/f"
for i in $(seq 1 300); do : >"$MNT/big/e$i"; done
kv_umount "$MNT"
out=$("$KVFSCTL" fsck "$STORE" 2>&1) || fail "fsck of the intact store: $out"

# --- schema 2 -> 4 at mount ----------------------------------------------
python3 - "$DB" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for i in ('dentry_by_parent', 'context_ttl_default', 'context_ttl_own'):
    db.execute('DROP INDEX ' + i)
db.execute('PRAGMA user_version=2')
db.commit()
EOF
kv_mount "$STORE" "$MNT"
grep -q 'applied schema 003_dentry_by_parent.sql' "${KV_LOG[$MNT]}" ||
    fail "no migration to schema 3 logged"
assert_eq "$(count_e "$MNT/big")" 300 "entries of big/ after the migration"
kv_umount "$MNT"
assert_eq "$(kv_info "$STORE" schema_version)" 4 "schema version after the migration"
pass "a schema 2 store migrates to 4 at mount"

# --- the entries-by-inode index damaged: readdir's parent lookup fails ---
corrupt dentry_by_ino
kv_mount "$STORE" "$MNT"
if out=$(ls "$MNT/ns" 2>&1); then
    fail "ls over a damaged index succeeded (listed: '$out'); expected an I/O error"
fi
[[ "$out" == *"Input/output error"* ]] || fail "ls over a damaged index: '$out'; expected EIO"
if out=$(ls "$MNT/big" 2>&1); then fail "ls big/ over a damaged index succeeded: '$out'"; fi
for _ in $(seq 100); do
    grep -q "kvfs.db is damaged" "${KV_LOG[$MNT]}" && break
    sleep 0.1
done
grep -q "kvfs.db is damaged.*kvfsctl rebuild" "${KV_LOG[$MNT]}" ||
    fail "the mount's quick_check logged no damage"
kv_umount "$MNT"
pass "ls over a damaged index: I/O error, and the mount logged the damage"

rc=0
out=$("$KVFSCTL" fsck "$STORE" 2>&1) || rc=$?
assert_eq "$rc" 1 "fsck exit status on a damaged index (output: $out)"
[[ "$out" == *"damaged"*"kvfsctl rebuild"* ]] || fail "fsck output does not say to rebuild: $out"
pass "fsck reports the damaged index and says to rebuild"

# --- rebuild recovers every entry ----------------------------------------
out=$("$KVFSCTL" rebuild "$STORE" 2>&1) || fail "rebuild failed: $out"
out=$("$KVFSCTL" fsck "$STORE" 2>&1) || fail "fsck after the rebuild: $out"
kv_mount "$STORE" "$MNT"
assert_eq "$(cd "$MNT/ns" && echo *)" "ctx1 ctx2" "ns/ after the rebuild"
assert_eq "$(cat "$MNT/ns/ctx2/f")" two "ns/ctx2/f after the rebuild"
assert_eq "$(count_e "$MNT/big")" 300 "entries of big/ after the rebuild"
kv_umount "$MNT"
pass "rebuild recovers the tree"

# --- the dentry table itself damaged: lookups fail with EIO too -----------
corrupt dentry
kv_mount "$STORE" "$MNT"
if out=$(ls "$MNT/ns" 2>&1); then fail "ls with a damaged dentry table succeeded: '$out'"; fi
[[ "$out" == *"Input/output error"* ]] || fail "ls with a damaged dentry table: '$out'"
if out=$(cat "$MNT/ns/ctx1/f" 2>&1); then fail "cat with a damaged dentry table succeeded"; fi
[[ "$out" == *"Input/output error"* ]] || fail "cat with a damaged dentry table: '$out'"
kv_umount "$MNT"
pass "a damaged dentry table: EIO for lookups and listings"
