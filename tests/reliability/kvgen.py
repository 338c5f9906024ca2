# SPDX-License-Identifier: Apache-2.0
"""Self-describing file contents for the kvfs reliability tests (stdlib only).

Every file written by crash.py and stress.py is a sequence of "versions":
each byte at offset o written with seed s is byte o of the stream
stream(fid, s), where fid names the file (it survives renames of its
directory).  The stream is cut into 4 KiB blocks; block b starts with a
24-byte header (magic, hash of fid, seed, b, kind) followed by a body derived
from the header, so a block read from anywhere says what it should be:

    kind 0  random bytes (incompressible: stored raw)
    kind 1  a 64-byte pattern repeated (compresses very well)
    kind 2  fp16-like: random low bytes, constant high bytes (shuffle helps)

A version of a file is a list of segments (a, b, seed): bytes [a, b) come
from stream(fid, seed).  This covers create, O_TRUNC rewrites, in-place
overwrites, appends and truncates.

check_bytes() decides whether bytes read from a file at offset 0 could have
been produced by the writes of the given seeds: every byte must equal the
byte at the same offset of one of the streams.  Bytes that match none (zeros
in place of data, bytes of another file, bytes moved to another offset) are
garbage.
"""

import functools
import hashlib
import struct

BLOCK = 4096
HDR = 24
MAGIC = b"KVCR"


def fid_hash(fid):
    return hashlib.blake2b(fid.encode(), digest_size=8).digest()


@functools.lru_cache(maxsize=8192)
def block(fh, seed, b):
    kind = seed % 3
    hdr = MAGIC + fh + struct.pack("<III", seed & 0xFFFFFFFF, b, kind)
    n = BLOCK - HDR
    if kind == 0:
        body = hashlib.shake_128(hdr).digest(n)
    elif kind == 1:
        body = (hashlib.shake_128(hdr).digest(64) * (n // 64 + 1))[:n]
    else:
        ba = bytearray(n)
        ba[0::2] = hashlib.shake_128(hdr).digest(n // 2)
        ba[1::2] = bytes([0x3C]) * (n // 2)
        body = bytes(ba)
    return hdr + body


def stream(fid, seed, a, b):
    """Bytes [a, b) of stream(fid, seed)."""
    if b <= a:
        return b""
    fh = fid_hash(fid)
    first, last = a // BLOCK, (b - 1) // BLOCK
    data = b"".join(block(fh, seed, i) for i in range(first, last + 1))
    off = first * BLOCK
    return data[a - off:b - off]


def content(fid, segs):
    return b"".join(stream(fid, s, a, b) for a, b, s in segs)


def size_of(segs):
    return segs[-1][1] if segs else 0


def clip(segs, n):
    """segs truncated (or, never here, extended) to n bytes."""
    out = []
    for a, b, s in segs:
        if a >= n:
            break
        out.append((a, min(b, n), s))
    return out


def overlay(segs, a, b, seed):
    """segs with [a, b) rewritten from seed (a <= size_of(segs))."""
    if b <= a:
        return list(segs)
    out = [(x, min(y, a), s) for x, y, s in segs if x < a]
    out.append((a, b, seed))
    out += [(max(x, b), y, s) for x, y, s in segs if y > b]
    return merge(out)


def merge(segs):
    out = []
    for a, b, s in segs:
        if b <= a:
            continue
        if out and out[-1][2] == s and out[-1][1] == a:
            out[-1] = (out[-1][0], b, s)
        else:
            out.append((a, b, s))
    return out


def common_prefix(x, y):
    """Length of the common prefix of bytes x and y."""
    n = min(len(x), len(y))
    if x[:n] == y[:n]:
        return n
    lo = 0
    step = BLOCK
    while lo + step <= n and x[lo:lo + step] == y[lo:lo + step]:
        lo += step
    hi = min(n, lo + step)
    # x[:lo] == y[:lo] and x[:hi] != y[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[lo:mid] == y[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_suffix(x, y):
    """Length of the common suffix of equal-length bytes x and y."""
    return common_prefix(x[::-1], y[::-1])


def check_bytes(fid, data, seeds, zeros_from=None):
    """None if every byte of data (read from offset 0) equals the byte at the
    same offset of stream(fid, s) for some s in seeds (or, at offsets from
    zeros_from on, is zero); else a description of the first offending byte."""
    n = len(data)
    streams = [stream(fid, s, 0, n) for s in seeds]
    for st in streams:
        if st == data:
            return None
    zeros = bytes(n)
    pos = 0
    while pos < n:
        best = 0
        cands = streams + ([zeros] if zeros_from is not None and pos >= zeros_from else [])
        for st in cands:
            best = max(best, common_prefix(data[pos:], st[pos:]))
            if pos + best >= n:
                break
        if best == 0:
            return describe_garbage(fid, data, pos, seeds)
        pos += best
    return None


def describe_garbage(fid, data, pos, seeds):
    end = pos
    while end < len(data) and end - pos < BLOCK:
        end += 1
    blk = data[pos - pos % BLOCK:pos - pos % BLOCK + BLOCK]
    what = "zeros" if not data[pos:end].strip(b"\0") else "non-zero bytes"
    info = ""
    if blk[:4] == MAGIC and len(blk) >= HDR:
        fh, seed, b, kind = blk[4:12], *struct.unpack("<III", blk[12:24])
        info = " (its block header says fid-hash %s seed %d block %d%s)" % (
            fh.hex(), seed, b, "" if fh == fid_hash(fid) else ": another file")
    return "byte %d of %d: %s that no write of seeds %s put there%s" % (
        pos, len(data), what, sorted(seeds), info)


def match_pattern(fid, data, base, seed, a, length, final):
    """If data is one state of a write of stream seed over [a, a+length) on
    top of version base (a prefix k of the write done, 0 <= k <= length; then,
    with final, the whole write truncated to final bytes), return that state
    as segments, else None."""
    n = len(data)
    if final is not None:
        done = clip(overlay(base, a, a + length, seed), final)
        if n == final and content(fid, done) == data:
            return done
    bsize = size_of(base)
    if n > max(bsize, a):
        k = n - a
        if k > length:
            return None
        segs = overlay(base, a, a + k, seed)
        return segs if content(fid, segs) == data else None
    if n != bsize:
        return None
    # same size as base: base with a prefix of the write over it
    old = content(fid, base)
    new = stream(fid, seed, a, min(a + length, n))
    p = common_prefix(data[a:], new)             # k <= p
    q = n - common_suffix(data, old)             # k >= q - a
    k = max(q - a, 0)
    if k <= p and k <= length and data[:a] == old[:a]:
        return overlay(base, a, a + k, seed)
    return None
