#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A stop by signal is a clean stop (issue 12, item 9): kvfs -f killed with
# SIGTERM (systemd's stop), SIGINT (^C) or SIGHUP unmounts, closes the
# store cleanly and exits 0; the service unit counted status 1 as a
# failure. Data written before the signal, including bytes a writer still
# held buffered in an open file, is there at the next mount, and that mount
# finds nothing to recover. A real failure still exits non-zero.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STORE=$T/store
MNT=$T/mnt

# clean_mark STORE: the index's "clean" mark (1 after a clean unmount).
clean_mark() {
    python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:%s/kvfs.db?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT value FROM meta WHERE key = ?", ("clean",)).fetchone()[0])' "$1"
}

# A shell starts background jobs with SIGINT ignored, and libfuse leaves an
# ignored signal alone: start the daemon with the default action, as a
# terminal or systemd does (exec keeps the pid).
printf '#!/bin/sh\nexec env --default-signal=INT "%s" "$@"\n' "$KVFS" >"$T/kvfs"
chmod +x "$T/kvfs"
KVFS=$T/kvfs

n=0
for sig in TERM INT HUP; do
    n=$((n + 1))
    kv_mount "$STORE" "$MNT"
    pid=${KV_PID[$MNT]}
    mkdir -p "$MNT/ns/ctx$n"
    head -c $((3 << 20)) /dev/urandom >"$T/data$n"
    cp "$T/data$n" "$MNT/ns/ctx$n/layer0"
    # A writer still holding the file open, its last bytes not yet
    # published: the stop must publish them, not drop them.
    exec 7>"$MNT/ns/ctx$n/open"
    printf 'tail of an open file %s\n' "$sig" >&7

    kill -s "$sig" "$pid"
    rc=0
    for ((i = 0; i < 300; i++)); do
        kv_pid_alive "$pid" || break
        sleep 0.05
    done
    kv_pid_alive "$pid" && fail "kvfs still running 15 s after SIG$sig"
    wait "$pid" || rc=$?
    exec 7>&-
    unset "KV_PID[$MNT]" "KV_CHILD[$MNT]"
    assert_eq "$rc" 0 "exit status of kvfs -f stopped by SIG$sig"
    kv_is_mounted "$MNT" && fail "$MNT still mounted after SIG$sig"
    assert_eq "$(clean_mark "$STORE")" 1 "the store's clean mark after SIG$sig"

    kv_mount "$STORE" "$MNT"
    cmp "$T/data$n" "$MNT/ns/ctx$n/layer0" || fail "data written before SIG$sig differs"
    assert_eq "$(cat "$MNT/ns/ctx$n/open")" "tail of an open file $sig" \
        "bytes buffered in a file open at SIG$sig"
    grep -q "not unmounted cleanly" "${KV_LOG[$MNT]}" &&
        fail "the mount after SIG$sig recovered from an unclean stop"
    kv_umount "$MNT"
    pass "SIG$sig: exit 0, unmounted, store clean, data there"
done

# A failure is still one: a STORE that is not a kvfs store is refused with
# status 1, in the foreground as well.
mkdir -p "$T/notastore"
echo precious >"$T/notastore/file"
rc=0
timeout 15 "$KVFS" -f "$T/notastore" "$MNT" >"$T/refused.log" 2>&1 || rc=$?
assert_eq "$rc" 1 "exit status of kvfs -f on a STORE that is not a kvfs store"
kv_is_mounted "$MNT" && fail "$MNT mounted on a STORE that is not a kvfs store"
pass "a failure still exits 1"
