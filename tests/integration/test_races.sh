#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Two data-safety races (docs/reliability.md, "Known gaps"):
#
# 1. ENOSPC found by a background compression job. codec=none, chunk=64K and
#    a cap that holds what the tree stores (a pinned 1000-byte file, the
#    empty ns/ctx/f in a pinned context, inode records) and three 64K records
#    but not a fourth (each record costs 64 bytes of header, measured on an
#    uncapped mount first): a writer writes four 64K chunks to ns/ctx/f (in 64K writes, which the write path may refuse
#    itself, and in 16K writes, which it admits, so that the compression
#    worker finds the cap) while a reader descriptor of the same file is
#    open; the reader closes before the writer, or after it. The writer must
#    get ENOSPC from a write() or its close(); the reader's close() must
#    return 0; and afterwards the file (read with O_DIRECT, so the daemon
#    answers, not the page cache) must be a byte-exact prefix of what was
#    written, no longer than what the writer was told was written, with
#    stored bytes that match its size: never 256K with a hole of zeros. The
#    daemon goes on serving other files, and the file reads the same after
#    another file is removed and after a remount.
# 2. Opening a file of a context that is being evicted. Under a 4 MiB cap a
#    writer keeps creating 256K contexts ns/cN/layer (LRU eviction), manual
#    evictions run through .kvfs/evict, and reader threads stat, open and
#    read files of recent contexts (half with O_DIRECT). Every read must fail
#    with ENOENT (or ESTALE) at stat/open, or return exactly the reference
#    bytes (kept outside the mount). The race is narrow; as root the loop
#    also makes the kernel drop its dentries and inodes every 0.05-0.2 s
#    (/proc/sys/vm/drop_caches, 2), so that opens look files up afresh and
#    the daemon loads new in-memory inodes, which widens it a lot (before
#    the fix: a few zero-filled reads in 20 s; without the drops, none seen).
#
# RACES_SECONDS (default 20) sets the length of part 2, RACES_READERS (4) its
# reader threads, RACES_SEED (random, printed) its choices, RACES_DROP_CACHES=0
# turns the cache drops off; RACES_PARTS (default 123) says which parts run.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=policy_lib.sh
. "$(dirname "$0")/policy_lib.sh"

PARTS=${RACES_PARTS:-123}
DRV=$T/races.py
cat >"$DRV" <<'EOF'
# races.py write PATH REF PIECE ORDER
#   Opens (creating) PATH to write, opens a reader fd on it, writes REF in PIECE-byte writes
#   (stopping at the first error), then closes reader and writer in ORDER
#   (reader-first or writer-first). Prints
#   "wrote=N write_err=E writer_close=E reader_close=E" (E: 0 or an errno name).
# races.py readback PATH REF
#   Reads PATH with O_DIRECT and compares with REF. Prints
#   "size=S read=N prefix=yes|no first_diff=D zeros_after=yes|no sha=H".
# races.py loop MNT REFDIR SECONDS READERS SEED SIZE
#   Part 2 of test_races.sh: a writer of contexts, manual evictions and
#   reader threads; prints counts, exits 1 when a read was neither ENOENT nor
#   the exact bytes.
import errno, hashlib, mmap, os, random, sys, threading, time

def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def cmd_write(path, ref, piece, order):
    data = open(ref, "rb").read()
    piece = int(piece)
    w = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    r = os.open(path, os.O_RDONLY)
    wrote, werr = 0, "0"
    while wrote < len(data):
        try:
            n = os.write(w, data[wrote:wrote + piece])
        except OSError as e:
            werr = ename(e)
            break
        wrote += n
    def close(fd):
        try:
            os.close(fd)
            return "0"
        except OSError as e:
            return ename(e)
    if order == "reader-first":
        rc = close(r)
        wc = close(w)
    else:
        wc = close(w)
        rc = close(r)
    print("wrote=%d write_err=%s writer_close=%s reader_close=%s" % (wrote, werr, wc, rc))

def read_direct(path):
    """(size from fstat, bytes) of path, read with O_DIRECT into an aligned buffer."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        size = os.fstat(fd).st_size
        buf = mmap.mmap(-1, 1 << 20)
        out = bytearray()
        while True:
            n = os.readv(fd, [buf])
            if n <= 0:
                break
            out += buf[:n]
        return size, bytes(out)
    finally:
        os.close(fd)

def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n

def cmd_readback(path, ref):
    want = open(ref, "rb").read()
    size, got = read_direct(path)
    d = first_diff(got, want)
    print("size=%d read=%d prefix=%s first_diff=%d zeros_after=%s sha=%s" % (
        size, len(got), "yes" if want[:len(got)] == got else "no", d,
        "yes" if got[d:] == bytes(len(got) - d) and d < len(got) else "no",
        hashlib.sha256(got).hexdigest()[:16]))

def cmd_loop(mnt, refdir, seconds, nreaders, seed, size):
    seconds, nreaders, size = float(seconds), int(nreaders), int(size)
    rnd = random.Random(int(seed))
    blobs = [open(os.path.join(refdir, f), "rb").read() for f in sorted(os.listdir(refdir))]
    assert blobs and all(len(b) == size for b in blobs)
    def content(n):  # each context's bytes differ: a name tag on a reference blob
        return (b"c%d:" % n).ljust(32, b".") + blobs[n % len(blobs)][32:]
    ns = os.path.join(mnt, "ns")
    lock = threading.Lock()
    done = []            # contexts whose writer's close() returned 0
    cnt = dict(ok=0, enoent=0, direct=0, mismatch=0, error=0, written=0,
               w_enoent=0, w_enospc=0, manual=0, manual_short=0, dropped=0)
    bad = []
    stop = time.monotonic() + seconds
    def add(k, v=1):
        with lock:
            cnt[k] += v
    def report(msg):
        with lock:
            cnt["mismatch"] += 1
            if len(bad) < 20:
                bad.append(msg)
    def writer():
        n = 0
        while time.monotonic() < stop:
            n += 1
            d = os.path.join(ns, "c%d" % n)
            try:
                os.mkdir(d)
                fd = os.open(os.path.join(d, "layer"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    data = content(n)
                    off = 0
                    while off < len(data):
                        off += os.write(fd, data[off:off + 65536])
                finally:
                    os.close(fd)
            except OSError as e:
                # a context with no bytes yet may go to a manual eviction;
                # ENOSPC when every context happens to be open at once
                if e.errno in (errno.ENOENT, errno.ESTALE):
                    add("w_enoent")
                elif e.errno == errno.ENOSPC:
                    add("w_enospc")
                else:
                    with lock:
                        cnt["error"] += 1
                        bad.append("writer c%d: %s" % (n, e))
                continue
            with lock:
                done.append(n)
                cnt["written"] += 1
    def evictor(r):
        ctl = os.path.join(mnt, ".kvfs", "evict")
        while time.monotonic() < stop:
            time.sleep(r.uniform(0.05, 0.25))
            try:
                with open(ctl, "w") as f:
                    f.write("%d\n" % r.randrange(1 << 20, 3 << 20))
                add("manual")
            except OSError as e:
                if e.errno == errno.ENOSPC:  # open contexts hold more than that
                    add("manual_short")
                    continue
                with lock:
                    cnt["error"] += 1
                    bad.append("manual eviction: %s" % e)
    def dropper(r):
        # the kernel forgets its dentries and inodes: the next open of a file
        # looks it up afresh, and the daemon loads a new in-memory inode
        while time.monotonic() < stop:
            time.sleep(r.uniform(0.02, 0.1))
            try:
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("2\n")
                add("dropped")
            except OSError:
                return
    def reader(r):
        while time.monotonic() < stop:
            # half of the picks near where LRU eviction is (about 15 contexts
            # fit), the others over a wider range (mostly evicted ones)
            with lock:
                recent = done[-20:-10] if r.random() < 0.5 else done[-40:]
            if not recent:
                time.sleep(0.01)
                continue
            n = r.choice(recent)
            path = os.path.join(ns, "c%d" % n, "layer")
            direct = r.random() < 0.5
            try:
                if r.random() < 0.5:
                    os.stat(path)
                fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ESTALE):
                    add("enoent")
                else:
                    with lock:
                        cnt["error"] += 1
                        bad.append("open c%d: %s" % (n, e))
                continue
            try:
                st = os.fstat(fd)
                buf = mmap.mmap(-1, 1 << 20)
                got = bytearray()
                while len(got) <= size:
                    k = os.readv(fd, [buf])
                    if k <= 0:
                        break
                    got += buf[:k]
            except OSError as e:
                report("c%d opened, then %s while reading%s" % (n, e, " (O_DIRECT)" if direct else ""))
                os.close(fd)
                continue
            try:
                os.close(fd)
            except OSError as e:
                report("close of a reader of c%d: %s" % (n, e))
                continue
            want = content(n)
            got = bytes(got)
            if got == want and st.st_size == size:
                add("ok")
                if direct:
                    add("direct")
                continue
            d = first_diff(got, want)
            zeros = d < len(got) and got[d:] == bytes(len(got) - d)
            report("c%d opened and read %d bytes (size %d)%s: differs from byte %d%s" % (
                n, len(got), st.st_size, " with O_DIRECT" if direct else "", d,
                ", zeros from there on" if zeros else ""))
    threads = [threading.Thread(target=writer), threading.Thread(target=evictor, args=(random.Random(rnd.random()),))]
    if os.environ.get("RACES_DROP_CACHES", "1") != "0":
        threads.append(threading.Thread(target=dropper, args=(random.Random(rnd.random()),)))
    threads += [threading.Thread(target=reader, args=(random.Random(rnd.random()),)) for _ in range(nreaders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in bad:
        print("BAD: " + b)
    print("reads ok=%(ok)d (O_DIRECT %(direct)d) enoent=%(enoent)d mismatches=%(mismatch)d "
          "errors=%(error)d; contexts written=%(written)d (writer ENOENT %(w_enoent)d, "
          "ENOSPC %(w_enospc)d), manual evictions=%(manual)d (+%(manual_short)d short of their target), cache drops=%(dropped)d" % cnt)
    sys.exit(1 if cnt["mismatch"] or cnt["error"] else 0)

cmd = sys.argv[1]
{"write": cmd_write, "readback": cmd_readback, "loop": cmd_loop}[cmd](*sys.argv[2:])
EOF

# val KEY LINE: the value of KEY=value in LINE.
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# ===========================================================================
# 1. ENOSPC found by the compression worker.
# ===========================================================================
CH=65536
REC64=$((CH + HDR))      # a 64K chunk's record (codec=none)
SLACK=4096               # inode records (a few hundred bytes each) are not chunk data
head -c $((4 * CH)) /dev/urandom >"$T/w.bin"
head -c 1000 /dev/urandom >"$T/other.bin"
head -c 3000 /dev/urandom >"$T/new.bin"

# enospc_case PIECE ORDER
enospc_case() {
    local piece=$1 order=$2 name="$1-byte writes, $2"
    local store=$T/store-$1-$2 mnt=$T/mnt-$1-$2 out rb rb2 s n fst want g i base opts
    # The tree first, without a cap: a pinned context with a 1000-byte file,
    # and the empty ns/ctx/f in a pinned context (nothing is evictable).
    kv_mount "$store" "$mnt" "codec=none,chunk=64K"
    mkdir -p "$mnt/ns/keep" "$mnt/ns/ctx"
    cp "$T/other.bin" "$mnt/ns/keep/g"
    : >"$mnt/ns/ctx/f"
    setfattr -n user.kvfs.pin -v 1 "$mnt/ns/keep" "$mnt/ns/ctx"
    base=$(stat1 "$mnt" kvfs_stored_bytes)
    # Then a cap that holds what is stored and three records of 64K, but not
    # a fourth: 32 bytes short of it (so a 64K write's own 65536 bytes would
    # fit, only its record's header does not).
    opts="codec=none,chunk=64K,capacity=$((base + 4 * REC64 - 32)),high=100,low=99"
    kv_remount "$store" "$mnt" "$opts"
    assert_eq "$(stat1 "$mnt" kvfs_stored_bytes)" "$base" "$name: stored bytes after a remount"

    out=$(py "$DRV" write "$mnt/ns/ctx/f" "$T/w.bin" "$piece" "$order") ||
        fail "$name: the writer script failed: $out"
    log "$name: $out"
    local wrote werr wclose rclose
    wrote=$(val wrote "$out") werr=$(val write_err "$out")
    wclose=$(val writer_close "$out") rclose=$(val reader_close "$out")
    kv_assert_alive
    case "$werr/$wclose" in
        ENOSPC/0 | ENOSPC/ENOSPC | 0/ENOSPC) ;;
        0/0) soft_fail "$name: every write and the writer's close succeeded, but only three of the four 64K records fit the cap: data lost silently ($out)" ;;
        *) soft_fail "$name: the writer got an error other than ENOSPC ($out)" ;;
    esac
    [ "$rclose" = 0 ] || soft_fail "$name: the reader's close() returned $rclose: the writer's error went to the wrong descriptor ($out)"

    # what the daemon serves now, every descriptor closed
    rb=$(py "$DRV" readback "$mnt/ns/ctx/f" "$T/w.bin") || fail "$name: reading ns/ctx/f back failed: $rb"
    log "$name: read back: $rb"
    s=$(val size "$rb") n=$(val read "$rb")
    if [ "$(val prefix "$rb")" != yes ]; then
        soft_fail "$name: ns/ctx/f is $s bytes and differs from what was written from byte $(val first_diff "$rb")$([ "$(val zeros_after "$rb")" = yes ] && echo ', zeros from there on') (writer: $out)"
    elif [ "$n" != "$s" ]; then
        soft_fail "$name: ns/ctx/f has size $s but $n bytes read back"
    elif [ "$s" -gt "$wrote" ]; then
        soft_fail "$name: ns/ctx/f has $s bytes, more than the $wrote the writer was told it wrote"
    elif [ "$werr" = 0 ] && [ "$wclose" = 0 ] && [ "$s" != "$wrote" ]; then
        soft_fail "$name: every write and close succeeded but ns/ctx/f has $s of $wrote bytes"
    fi
    # stored bytes agree with the size: one record (raw, codec=none) per chunk
    fst=$(xget "$mnt/ns/ctx/f" user.kvfs.stored_bytes)
    want=$((s + HDR * ((s + CH - 1) / CH)))
    [ "$fst" = "$want" ] || soft_fail "$name: user.kvfs.stored_bytes of ns/ctx/f is $fst, expected $want for its $s bytes"
    # and so do the stored bytes of the mount, give or take inode records
    # (and their changes): no chunk record leaked, none missing
    g=$(stat1 "$mnt" kvfs_stored_bytes)
    i=$((g - base - want))
    if [ "$i" -lt -$SLACK ] || [ "$i" -gt $SLACK ]; then
        soft_fail "$name: kvfs_stored_bytes is $g: $i bytes off the $base before the writer plus ns/ctx/f's $want"
    fi

    # the daemon serves other files: the pinned one, and a new one
    kv_assert_alive
    cmp "$T/other.bin" "$mnt/ns/keep/g" || soft_fail "$name: ns/keep/g differs after the ENOSPC"
    cp "$T/new.bin" "$mnt/ns/keep/h" || soft_fail "$name: writing a new 3000-byte file after the ENOSPC failed"
    out=$(py "$DRV" readback "$mnt/ns/keep/h" "$T/new.bin")
    [ "$(val prefix "$out")/$(val read "$out")" = yes/3000 ] || soft_fail "$name: the new file reads back wrong: $out"

    # the same after removing files, and after a remount
    rm "$mnt/ns/keep/g" "$mnt/ns/keep/h"
    rb2=$(py "$DRV" readback "$mnt/ns/ctx/f" "$T/w.bin") || fail "$name: reading ns/ctx/f back failed: $rb2"
    [ "$rb2" = "$rb" ] || soft_fail "$name: ns/ctx/f reads differently after other files were removed: '$rb' then '$rb2'"
    kv_remount "$store" "$mnt" "$opts"
    rb2=$(py "$DRV" readback "$mnt/ns/ctx/f" "$T/w.bin") || fail "$name: reading ns/ctx/f back after a remount failed: $rb2"
    [ "$rb2" = "$rb" ] || soft_fail "$name: ns/ctx/f reads differently after a remount: '$rb' then '$rb2'"
    cmp -n "$(val size "$rb2")" "$T/w.bin" "$mnt/ns/ctx/f" ||
        soft_fail "$name: ns/ctx/f (buffered read after a remount) is not a prefix of what was written"
    kv_umount "$mnt"
    soft_pass "$name: writer got ENOSPC, reader's close 0, ns/ctx/f is a $s-byte prefix of the data, same after rm and remount"
}

if [[ $PARTS == *1* ]]; then
    for piece in $CH 16384; do
        for order in reader-first writer-first; do
            enospc_case "$piece" "$order"
        done
    done
fi

# ===========================================================================
# 3. A truncate is durable when it returns, also while another descriptor
#    holds the file open (it used to wait for that descriptor's close: a
#    kill meanwhile brought the old size back).
# ===========================================================================
if [[ $PARTS == *3* ]]; then
    STORE=$T/store-trunc
    MNT=$T/mnt-trunc
    head -c 300000 /dev/urandom >"$T/trunc-src"
    kv_mount "$STORE" "$MNT" "chunk=64K"
    mkdir -p "$MNT/ns/ctx"
    cp "$T/trunc-src" "$MNT/ns/ctx/cut"
    cp "$T/trunc-src" "$MNT/ns/ctx/grow"
    # Held open by another process: a descriptor of this shell would be
    # inherited by python, whose exit (a close) would publish anyway.
    sleep 600 7<"$MNT/ns/ctx/cut" 8<"$MNT/ns/ctx/grow" &
    holder=$!
    # truncate(2) on the path (truncate(1) opens the file: its close
    # published the change anyway)
    python3 -c 'import os, sys; os.truncate(sys.argv[1], 100000); os.truncate(sys.argv[2], 400000)' \
        "$MNT/ns/ctx/cut" "$MNT/ns/ctx/grow"
    pid=${KV_PID[$MNT]}
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    unset "KV_PID[$MNT]"
    kill "$holder"
    wait "$holder" 2>/dev/null || true
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
    kv_mount "$STORE" "$MNT" "chunk=64K"
    assert_eq "$(stat -c %s "$MNT/ns/ctx/cut")" 100000 "size of a file truncated while open elsewhere, after kill -9"
    assert_eq "$(stat -c %s "$MNT/ns/ctx/grow")" 400000 "size of a file extended while open elsewhere, after kill -9"
    cmp -n 100000 "$T/trunc-src" "$MNT/ns/ctx/cut" || fail "truncated file: its first 100000 bytes differ"
    cmp -n 300000 "$T/trunc-src" "$MNT/ns/ctx/grow" || fail "extended file: its first 300000 bytes differ"
    [ "$(tail -c 100000 "$MNT/ns/ctx/grow" | tr -d '\0' | wc -c)" -eq 0 ] || fail "extended file: not zeros past its old end"
    # Extended again: the cut bytes must not come back.
    truncate -s 300000 "$MNT/ns/ctx/cut"
    [ "$(tail -c 200000 "$MNT/ns/ctx/cut" | tr -d '\0' | wc -c)" -eq 0 ] || fail "truncated file extended again: not zeros past the cut"
    kv_umount "$MNT"
    pass "truncates while the file is open elsewhere survive kill -9"
fi

# ===========================================================================
# 2. Opens racing the eviction of their context.
# ===========================================================================
if [[ $PARTS != *2* ]]; then soft_done; exit 0; fi
SECS=${RACES_SECONDS:-20}
READERS=${RACES_READERS:-4}
SEED=${RACES_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SIZE=$((256 * 1024))
STORE=$T/store-evict
MNT=$T/mnt-evict
mkdir -p "$T/ref"
for i in 0 1 2 3 4 5 6 7; do head -c $SIZE /dev/urandom >"$T/ref/blob$i"; done
kv_mount "$STORE" "$MNT" "codec=none,chunk=64K,capacity=4M"
mkdir "$MNT/ns"
log "eviction race: $SECS s, $READERS readers, seed $SEED (rerun with RACES_SEED=$SEED)"
rc=0
out=$(py "$DRV" loop "$MNT" "$T/ref" "$SECS" "$READERS" "$SEED" $SIZE 2>&1) || rc=$?
printf '%s\n' "$out" | sed "s/^/[$KV_TEST_NAME] /" >&2
kv_assert_alive
summary=$(tail -n 1 <<<"$out")
[[ $summary == "reads ok="* ]] || fail "eviction race: the driver failed (rc=$rc): $out"
[ "$rc" -eq 0 ] || soft_fail "eviction race: reads that were neither ENOENT nor the exact bytes, or unexpected errors (seed $SEED; $summary); first: $(grep -m1 '^BAD' <<<"$out" | cut -c6-)"
ok=$(sed -n 's/^reads ok=\([0-9]*\).*/\1/p' <<<"$summary")
[ "${ok:-0}" -gt 0 ] || fail "eviction race: no read succeeded ($summary)"
lru=$(stat1 "$MNT" 'kvfs_evictions_total{reason="lru"}')
manual=$(stat1 "$MNT" 'kvfs_evictions_total{reason="manual"}')
log "eviction race: $lru LRU and $manual manual evictions"
check '[ $((lru + manual)) -gt 0 ]' "eviction race: nothing was evicted"
kv_umount "$MNT"
soft_pass "eviction race: every read was ENOENT or the exact bytes ($summary)"
soft_done
