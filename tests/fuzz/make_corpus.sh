#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck disable=SC2016  # store's commands expand $data in their own shell
# Makes the seed corpora of tests/fuzz from what kvfs itself writes: the
# segments of small stores (one per codec and filter) holding slices of
# tests/data/kv, the records cut out of them (inode records' payloads for
# fuzz_meta), and GPU ioctl requests.
#   tests/fuzz/make_corpus.sh KVFS OUT_DIR
# KVFS is a kvfs binary; it is mounted, so this needs /dev/fuse (root).
# The corpora in tests/fuzz/corpus/ were made this way; segment headers
# carry a random store id and a time, so each run differs in those bytes.
set -euo pipefail
kvfs=$(realpath "$1")
out=$(mkdir -p "$2" && realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data/kv/gpl3
tmp=$(mktemp -d)
cleanup() {
	local m
	for m in "$tmp"/*/mnt; do
		if mountpoint -q "$m"; then fusermount3 -u "$m"; fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$out/record" "$out/segment" "$out/ioctl" "$out/meta"

# store NAME OPTS CMD: mount a new store with -o OPTS, run CMD in a context
# directory of it, unmount, keep its segment as segment/NAME.seg.
store() {
	local dir=$tmp/$1 pid
	mkdir -p "$dir/store" "$dir/mnt"
	"$kvfs" -f -o "$2" "$dir/store" "$dir/mnt" 2>"$dir/log" &
	pid=$!
	for _ in $(seq 100); do mountpoint -q "$dir/mnt" && break; sleep 0.1; done
	mountpoint -q "$dir/mnt" || { cat "$dir/log" >&2; exit 1; }
	mkdir -p "$dir/mnt/ns/ctx"
	(cd "$dir/mnt/ns/ctx" && data=$data bash -euc "$3")
	fusermount3 -u "$dir/mnt"
	wait "$pid"
	install -m 644 "$dir/store/segments/00000001.seg" "$out/segment/$1.seg"
}

store lz4-auto codec=lz4,chunk=64K \
	'head -c 70000 "$data/layer0.k.f16" >k; head -c 5000 "$data/layer0.v.bf16" >v; cp "$data/meta.json" .'
store lz4-off codec=lz4,chunk=64K,shuffle=off \
	'head -c 20000 "$data/layer1.k.f16" >k; yes kvfs | head -c 65536 >text'
# A file removed after a sync leaves a punched hole between two records.
store lz4-shuffle2-hole codec=lz4,chunk=64K,shuffle=2 \
	'head -c 40000 "$data/layer0.v.bf16" >v; head -c 30000 "$data/layer1.k.bf16" >gone
	 head -c 9000 "$data/layer1.v.bf16" >k; sync; rm gone'
store lz4-shuffle4 codec=lz4,chunk=64K,shuffle=4 'head -c 12345 "$data/layer0.v.f16" >v'
store zstd3-shuffle2 codec=zstd:3,chunk=64K,shuffle=2 \
	'head -c 100000 "$data/layer1.v.bf16" >v; cp "$data/meta.json" .'
store zstd-shuffle4 codec=zstd,chunk=64K,shuffle=4 'head -c 70000 "$data/layer1.k.f16" >k'
store none codec=none,chunk=64K \
	'head -c 3000 "$data/layer0.k.bf16" >k; cp "$data/meta.json" .; echo hello >b'
# Inode records of every kind: names, a symlink, xattrs, a pinned context
# with a TTL, a renamed file, a sparse file, a file removed while open.
store meta codec=lz4,chunk=64K \
	'head -c 200000 "$data/layer0.k.f16" >k; ln -s k link; truncate -s 1M sparse
	 setfattr -n user.model -v llama k; setfattr -n user.bin -v 0x00ff00 k
	 setfattr -n user.kvfs.pin -v 1 .; setfattr -n user.kvfs.ttl -v 3600 .
	 mv k k2; chmod 640 k2; touch -d @1000000000 k2; mkdir -p ../other/c
	 exec 3>gone; echo x >&3; rm gone; exec 3>&-'
# A torn tail: the segment as a crash in the middle of its second record
# would leave it.
head -c 40000 "$out/segment/zstd3-shuffle2.seg" >"$out/segment/zstd3-torn.seg"

python3 - "$out" <<'EOF'
import os, struct, sys
out = sys.argv[1]

# Records: cut from each segment at the offsets a scan finds them.
for name in sorted(os.listdir(f"{out}/segment")):
    if "torn" in name:
        continue
    b = open(f"{out}/segment/{name}", "rb").read()
    i = n = 0
    while (i := b.find(b"KVR1", i)) >= 0 and i + 64 <= len(b):
        ver, hlen = struct.unpack_from("<HH", b, i + 4)
        stored = struct.unpack_from("<I", b, i + 16)[0]
        if ver == 1 and hlen == 64 and i + 64 + stored <= len(b):
            open(f"{out}/record/{name[:-4]}-{n}.rec", "wb").write(b[i:i + 64 + stored])
            if b[i + 8] == 2:  # an inode record: its payload seeds fuzz_meta
                open(f"{out}/meta/{name[:-4]}-{n}.bin", "wb").write(b[i + 64:i + 64 + stored])
            i, n = i + 64 + stored, n + 1
        else:
            i += 1

# ioctl requests, laid out as fuzz_ioctl.c reads them.
def ioc(nr, size):  # _IOWR('K', nr, size)
    return 3 << 30 | size << 16 | ord("K") << 8 | nr
IO, QUERY = 3968, 320
READ, WRITE = ioc(2, IO), ioc(3, IO)
CUDA, HIP = 2, 1
RD, WR = 2, 4  # KV_FAST_CAN_READ, KV_FAST_CAN_WRITE
MiB = 1 << 20

def req(name, cmd, mode, fsize, segs, size=IO, abi=1, ssize=IO, vendor=CUDA, flags=0, nseg=None):
    io = struct.pack("<IIII", abi, ssize, vendor, flags) + bytes(range(64)) + bytes(16)
    io += struct.pack("<QIIQiI", 64 * MiB, len(segs) if nseg is None else nseg, 0, 0, 0, 0)
    io += b"".join(struct.pack("<QQQ", *s) for s in segs).ljust(IO - 128, b"\0")
    hdr = struct.pack("<IIIIQ", cmd, size, size, mode, fsize)
    open(f"{out}/ioctl/{name}.bin", "wb").write(hdr + io)

chunks = [(i * MiB, i * MiB, MiB) for i in range(4)]
req("read-4chunks", READ, RD, 4 * MiB, chunks)
req("read-hip-rw", READ, RD | WR, 3 * MiB + 5, [(MiB, 0, 2 * MiB + 5), (0, 0, 0)], vendor=HIP)
req("read-160segs", READ, RD, 160 * 4096, [(i * 4096, i * 4096, 4096) for i in range(160)])
req("write-extend", WRITE, WR, 0, [(8 * MiB, 0, MiB), (2**63 - 2 * MiB, MiB, MiB)])
req("err-version", READ, RD, MiB, chunks[:1], abi=2)
req("err-size", READ, RD, MiB, chunks[:1], ssize=IO - 24)
req("err-nseg0", READ, RD, MiB, [], nseg=0)
req("err-nseg161", WRITE, WR, MiB, chunks, nseg=161)
req("err-flags", READ, RD, MiB, chunks[:1], flags=1)
req("err-vendor", READ, RD, MiB, chunks[:1], vendor=0)
req("err-access", WRITE, RD, MiB, chunks[:1])
req("err-eof", READ, RD, MiB - 1, chunks[:1])
req("err-off-2p63", WRITE, WR, 0, [(2**63 - 4096, 0, 4096)])
req("err-off-wrap", WRITE, WR, 0, [(2**64 - 4096, 0, 8192)])
req("err-dev-wrap", READ, RD, MiB, [(0, 2**64 - 1, 2)])
req("err-abi-size", ioc(2, IO - 24), RD, MiB, chunks[:1], size=IO - 24)
req("query", ioc(1, QUERY), 0, 0, [], size=QUERY)
req("foreign-cmd", 0x80086601, RD, MiB, chunks[:1], size=8)  # FS_IOC_GETFLAGS
EOF
