#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # check() evals its condition string later
# Bit rot: real KV files and larger multi-chunk files are written through a
# mount, the store is damaged while unmounted (a payload byte, header bytes,
# a zeroed range, a torn segment tail), and then:
#   - reading a damaged file gives EIO, never wrong bytes: every chunk that
#     reads at all matches the original, and what cat/dd copy before the
#     error is a prefix of it; undamaged files read back byte-exact;
#   - kvfs_checksum_errors_total counts each damaged chunk once, however
#     often it is read (quarantine), and the daemon log names the file;
#   - `kvfsctl fsck` lists exactly the damaged files and chunks, exits 1;
#     `--repair` cuts each one before its first damaged chunk (or removes
#     it), a second fsck exits 0, and after a remount every surviving byte
#     is the original.
# Which chunks are damaged is worked out from the segment bytes themselves
# (docs/format.md), not from kvfs: a chunk is damaged when any byte of its
# record changed or was cut off.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

kv_need_kv_data
STORE=$T/store
MNT=$T/mnt
ORIG=$T/orig
CHUNK=65536
OPTS=chunk=64K
PY=$T/bitrot.py

cat >"$PY" <<'EOF'
"""Helpers of test_bitrot.sh: the store's records (docs/format.md) and reads."""
import errno, os, sqlite3, struct, sys

REC = struct.Struct('<IHHBBBBIIIQQ')  # record header bytes 0..40


def chunks(store):
    """(path, idx, segment file, off, len, ino, raw) of every chunk row."""
    db = sqlite3.connect('file:%s/kvfs.db?mode=ro' % store, uri=True)
    names = {ino: (parent, name if isinstance(name, str) else bytes(name).decode())
             for parent, name, ino in db.execute('SELECT parent, name, ino FROM dentry')}
    rows = db.execute('SELECT ino, idx, seg, off, len, raw FROM chunk WHERE idx >= 0').fetchall()
    db.close()

    def path(ino):
        parts = []
        while ino != 1:
            ino, name = names[ino]
            parts.append(name)
        return '/' + '/'.join(reversed(parts))

    return [(path(ino), idx, '%s/segments/%08x.seg' % (store, seg), off, ln, ino, raw)
            for ino, idx, seg, off, ln, raw in rows]


def cmd_check(store):
    """Print the number of chunk rows, after checking that each names a
    record whose header (docs/format.md) agrees with it."""
    rows = chunks(store)
    for p, idx, f, off, ln, ino, raw in rows:
        with open(f, 'rb') as s:
            s.seek(off)
            h = s.read(64)
        seg = int(os.path.basename(f)[:8], 16)
        got = REC.unpack_from(h)
        got = got[:4] + got[7:]
        if got != (0x3152564b, 1, 64, 1, raw, ln - 64, seg, ino, idx):
            sys.exit('%s chunk %d: header %r disagrees with the index' % (p, idx, got))
    print(len(rows))


def cmd_inject(store, *specs):
    """Apply each corruption: flip:PATH:IDX:AT flips a bit of byte AT of
    the record of chunk IDX of PATH (AT 'mid': the middle of its payload),
    zero:PATH:IDX:N zeroes N bytes across the end of that record (into the
    next one, if any), tear:SEG:K cuts segment SEG in the middle of its
    K-th record from the end."""
    rows = chunks(store)
    for spec in specs:
        kind, *a = spec.split(':')
        if kind == 'tear':
            f = '%s/segments/%08x.seg' % (store, int(a[0]))
            off, ln = sorted((off, ln) for _, _, g, off, ln, _, _ in rows if g == f)[-int(a[1])]
            os.truncate(f, off + ln // 2)
            continue
        f, off, ln = [(g, o, n) for p, i, g, o, n, _, _ in rows
                      if p == a[0] and i == int(a[1])][0]
        mid = off + 64 + (ln - 64) // 2
        with open(f, 'r+b') as s:
            if kind == 'flip':
                at = mid if a[2] == 'mid' else off + int(a[2])
                s.seek(at)
                b = s.read(1)
                s.seek(at)
                s.write(bytes([b[0] ^ 0x10]))
            else:
                s.seek(off + ln - int(a[2]) // 2)
                s.write(bytes(int(a[2])))


def cmd_damaged(store, before):
    """'path idx' of every chunk whose record bytes differ from the copy of
    the segments in before, or are gone."""
    bad = set()
    for p, i, f, off, ln, _, _ in chunks(store):
        old = os.path.join(before, os.path.basename(f))
        with open(old, 'rb') as s:
            s.seek(off)
            want = s.read(ln)
        got = b''
        if os.path.exists(f):
            with open(f, 'rb') as s:
                s.seek(off)
                got = s.read(ln)
        if got != want:
            bad.add((p, i))
    for p, i in sorted(bad):
        print(p, i)


def cmd_read(chunk, orig, mnt, *paths):
    """Read each file chunk by chunk and print 'path idx' for each chunk
    that gives EIO; fail on any byte that differs from the copy under orig,
    or on another error."""
    chunk = int(chunk)
    for path in paths:
        want = open(orig + path, 'rb').read()
        size = os.stat(mnt + path).st_size
        if size != len(want):
            sys.exit('%s: size %d, expected %d' % (path, size, len(want)))
        fd = os.open(mnt + path, os.O_RDONLY)
        for idx in range((size + chunk - 1) // chunk):
            try:
                got = os.pread(fd, chunk, idx * chunk)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                print(path, idx)
                continue
            if got != want[idx * chunk:(idx + 1) * chunk]:
                sys.exit('%s: chunk %d reads wrong bytes' % (path, idx))
        os.close(fd)


def cmd_fsckparse():
    """'path idx' of each chunk in kvfsctl fsck's 'PATH: damaged chunks 1-3 7' lines."""
    out = []
    for line in sys.stdin:
        if ': damaged chunk' not in line:
            continue
        path, rest = line.rstrip('\n').split(': damaged chunk', 1)
        for r in rest.lstrip('s').split():
            a, _, b = r.partition('-')
            out += [(path, i) for i in range(int(a), int(b or a) + 1)]
    for p, i in sorted(out):
        print(p, i)


globals()['cmd_' + sys.argv[1]](*sys.argv[2:])
EOF
py() { python3 "$PY" "$@"; }
errors_total() { awk '$1 == "kvfs_checksum_errors_total" { print $2 }' "$MNT/.kvfs/stats"; }

# --- write: real KV files, and larger files of several chunks --------------
kv_mount "$STORE" "$MNT" "$OPTS"
mkdir -p "$MNT/ns/ctx" "$MNT/ns/big" "$ORIG/ns/ctx" "$ORIG/ns/big"
cp "$SRC"/* "$ORIG/ns/ctx/"
cat "$SRC"/*.f16 "$SRC"/*.f16 >"$ORIG/ns/big/kvcat"          # fp16, compressible
head -c $((10 * CHUNK + 4321)) /dev/urandom >"$ORIG/ns/big/rand1"
head -c $((4 * CHUNK)) /dev/urandom >"$ORIG/ns/big/rand2"
cat "$SRC"/*.bf16 >"$ORIG/ns/big/bf16cat"
cp "$ORIG"/ns/ctx/* "$MNT/ns/ctx/"
cp "$ORIG"/ns/big/* "$MNT/ns/big/"
kv_umount "$MNT"
# A second run appends to a segment of its own: its tail gets torn.
kv_mount "$STORE" "$MNT" "$OPTS"
head -c $((6 * CHUNK + 99)) /dev/urandom >"$ORIG/ns/big/tail"
cp "$ORIG/ns/big/tail" "$MNT/ns/big/tail"
kv_umount "$MNT"
FILES=$(cd "$ORIG" && find . -type f | sed 's|^\.||' | LC_ALL=C sort)
nfiles=$(wc -l <<<"$FILES")
nchunks=$(py check "$STORE") || fail "the index and the record headers disagree: $nchunks"
check '[ -f "$STORE/segments/00000002.seg" ]' "the second run wrote no segment 2"
"$KVFSCTL" fsck "$STORE" >"$T/fsck0" 2>&1 || fail "fsck of the intact store failed: $(cat "$T/fsck0")"
grep -q "checked $nfiles files, $nchunks chunks" "$T/fsck0" ||
    fail "fsck summary of the intact store: $(cat "$T/fsck0") (expected $nfiles files, $nchunks chunks)"
pass "$nfiles files, $nchunks chunks written; fsck of the intact store exits 0"

# --- damage ---------------------------------------------------------------
cp -a "$STORE/segments" "$T/before"
corruptions=(
    flip:/ns/ctx/layer0.k.f16:1:mid   # a payload byte
    flip:/ns/big/rand1:3:12           # a header byte: the raw length
    flip:/ns/ctx/layer1.v.f16:0:24    # a header byte of chunk 0: the owner inode
    zero:/ns/big/kvcat:5:800          # a zeroed range
    tear:2:3                          # a torn segment tail
)
injected=${#corruptions[@]}
py inject "$STORE" "${corruptions[@]}"
py damaged "$STORE" "$T/before" >"$T/expected"
ndamaged=$(wc -l <"$T/expected")
DAMAGED=$(cut -d' ' -f1 "$T/expected" | uniq)
ndfiles=$(wc -l <<<"$DAMAGED")
for c in "${corruptions[@]}"; do
    p=$(cut -d: -f2 <<<"$c"); [ "$p" = 2 ] && p=/ns/big/tail   # segment 2 holds only tail
    grep -qxF "$p" <<<"$DAMAGED" || fail "$c damaged nothing of $p: $(cat "$T/expected")"
done
check '[ "$ndamaged" -ge $((injected + 3)) ]' "too few damaged chunks: $(cat "$T/expected")"
log "injected $injected corruptions: $ndamaged damaged chunks in $ndfiles files"

# --- read through a mount ---------------------------------------------------
kv_mount "$STORE" "$MNT"
assert_eq "$(errors_total)" 0 "kvfs_checksum_errors_total after mount"
caught_read=0
for p in $DAMAGED; do
    # cat and dd stop at the first EIO; what they copied is the original's start
    cat "$MNT$p" >"$T/cat.out" 2>"$T/cat.err" && fail "cat of damaged $p succeeded"
    grep -q 'Input/output error' "$T/cat.err" || fail "cat of $p: $(cat "$T/cat.err")"
    n=$(stat -c %s "$T/cat.out")
    cmp -n "$n" "$T/cat.out" "$ORIG$p" || fail "cat of $p copied wrong bytes before its EIO"
    dd if="$MNT$p" of="$T/dd.out" bs=$CHUNK status=none 2>/dev/null &&
        fail "dd of damaged $p succeeded"
    n=$(stat -c %s "$T/dd.out")
    cmp -n "$n" "$T/dd.out" "$ORIG$p" || fail "dd of $p copied wrong bytes before its EIO"
    first=$(awk -v p="$p" '$1 == p { print $2; exit }' "$T/expected")
    check '[ "$n" -le $((first * CHUNK)) ]' "dd of $p copied $n bytes, past its damaged chunk $first"
    grep -qF "$p (inode" "${KV_LOG[$MNT]}" || fail "the daemon log does not name $p"
    caught_read=$((caught_read + 1))
done
# every chunk: EIO exactly where damaged, the original bytes elsewhere
# shellcheck disable=SC2086  # one path a word
py read $CHUNK "$ORIG" "$MNT" $DAMAGED >"$T/eio" || fail "reading chunk by chunk: $(cat "$T/eio")"
diff "$T/expected" "$T/eio" >&2 || fail "the chunks that give EIO are not the damaged ones"
assert_eq "$(errors_total)" "$ndamaged" "kvfs_checksum_errors_total after reading every damaged chunk"
# shellcheck disable=SC2086
py read $CHUNK "$ORIG" "$MNT" $DAMAGED >"$T/eio2" || fail "rereading: $(cat "$T/eio2")"
diff "$T/expected" "$T/eio2" >&2 || fail "a second read gives EIO elsewhere"
assert_eq "$(errors_total)" "$ndamaged" "kvfs_checksum_errors_total after reading them again"
assert_eq "$(grep -c 'damaged record (segment' "${KV_LOG[$MNT]}")" "$ndamaged" \
    "daemon log lines naming a damaged chunk (once each)"
for p in $FILES; do
    grep -qxF "$p" <<<"$DAMAGED" && continue
    cmp "$ORIG$p" "$MNT$p" || fail "undamaged $p does not read back byte-exact"
done
assert_eq "$(errors_total)" "$ndamaged" "kvfs_checksum_errors_total after reading the intact files"
expect_fail 'in use' "fsck of a mounted store" "$KVFSCTL" fsck "$STORE"
kv_umount "$MNT"
pass "$caught_read of $ndfiles damaged files give EIO and no wrong byte; $ndamaged errors counted once each"

# --- fsck, repair -----------------------------------------------------------
rc=0; "$KVFSCTL" fsck "$STORE" >"$T/fsck1" 2>"$T/fsck1.err" || rc=$?
assert_eq "$rc" 1 "fsck exit status with damage ($(cat "$T/fsck1"))"
py fsckparse <"$T/fsck1" >"$T/reported"
diff "$T/expected" "$T/reported" >&2 || fail "fsck reported other chunks than the damaged ones"
grep -q "checked $nfiles files, $nchunks chunks, .*: $ndfiles damaged files, $ndamaged damaged chunks" \
    "$T/fsck1" || fail "fsck summary: $(tail -n 1 "$T/fsck1")"
grep -q '^segment 00000002.seg: .* too short' "$T/fsck1" || fail "fsck does not name the torn segment"
caught_fsck=$(cut -d' ' -f1 "$T/reported" | uniq | wc -l)

rc=0; "$KVFSCTL" fsck "$STORE" --repair >"$T/fsck2" 2>"$T/fsck2.err" || rc=$?
assert_eq "$rc" 1 "fsck --repair exit status ($(cat "$T/fsck2" "$T/fsck2.err"))"
removed=0
for p in $DAMAGED; do
    first=$(awk -v p="$p" '$1 == p { print $2; exit }' "$T/expected")
    size=$(stat -c %s "$ORIG$p")
    if [ "$first" -eq 0 ]; then
        grep -qxF "$p: removed (chunk 0 damaged)" "$T/fsck2" || fail "fsck --repair: $p not removed"
        removed=$((removed + 1))
    else
        cut=$((first * CHUNK < size ? first * CHUNK : size))
        grep -qF "$p: truncated from $size to $cut bytes" "$T/fsck2" ||
            fail "fsck --repair: $p not truncated to $cut: $(cat "$T/fsck2")"
    fi
done
check '[ "$removed" -ge 1 ]' "the damaged chunk 0 of layer1.v.f16 should have removed it"
"$KVFSCTL" fsck "$STORE" >"$T/fsck3" 2>&1 || fail "fsck after --repair is not clean: $(cat "$T/fsck3")"
grep -q "checked $((nfiles - removed)) files, .*: 0 damaged files, 0 damaged chunks" "$T/fsck3" ||
    fail "fsck after repair: $(cat "$T/fsck3")"
pass "fsck listed exactly the $ndamaged damaged chunks of $caught_fsck files, --repair fixed them, a second fsck is clean"

# --- after repair: the surviving bytes --------------------------------------
kv_mount "$STORE" "$MNT"
for p in $FILES; do
    first=$(awk -v p="$p" '$1 == p { print $2; exit }' "$T/expected")
    if [ -z "$first" ]; then
        cmp "$ORIG$p" "$MNT$p" || fail "intact $p changed by the repair"
    elif [ "$first" -eq 0 ]; then
        check '[ ! -e "$MNT$p" ]' "$p should be gone"
    else
        size=$(stat -c %s "$ORIG$p")
        cut=$((first * CHUNK < size ? first * CHUNK : size))
        assert_eq "$(stat -c %s "$MNT$p")" "$cut" "size of repaired $p"
        cmp -n "$cut" "$ORIG$p" "$MNT$p" || fail "surviving bytes of repaired $p differ"
        cat "$MNT$p" >/dev/null || fail "repaired $p still gives an error"
    fi
done
assert_eq "$(errors_total)" 0 "kvfs_checksum_errors_total after repair"
kv_umount "$MNT"

# --- the command line ---------------------------------------------------------
expect_fail 'usage' "fsck without a store" "$KVFSCTL" fsck
expect_fail 'usage' "fsck with an unknown option" "$KVFSCTL" fsck "$STORE" --fix
rc=0; "$KVFSCTL" fsck "$T/nostore" >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "fsck exit status for a missing store"
check '[ ! -e "$T/nostore" ]' "fsck created a store"
pass "injected $injected corruptions ($ndamaged damaged chunks in $ndfiles files): $caught_read caught on read, $caught_fsck by fsck, all repaired"
