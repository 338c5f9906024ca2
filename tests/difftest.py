#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Seeded randomized differential tester for kvfs (python3 stdlib only).

Applies the same random sequence of file operations to a directory on a kvfs
mount and to a "shadow" directory on a reference filesystem (tmpfs), and
compares every result: bytes read, return values, errno, st_size after every
mutating step, directory listings, and the full contents of every file (via
fresh opens and via every open descriptor) every --check-every operations and
at the end.

    python3 tests/difftest.py --mount MNT --shadow SHADOW --seed N --ops N

Operations: pwrite at random offsets/sizes (0..--max-io, often straddling
--chunk boundaries, sometimes far beyond EOF to make holes), write() after
lseek, O_APPEND writes, pread, sequential read, ftruncate/truncate, fsync,
fadvise(DONTNEED) (so that reads go back to the daemon), open (with O_CREAT,
O_TRUNC, O_RDONLY, O_APPEND variations; several descriptors on the same file),
close, close-all-and-reopen, rename of files (also over existing and open
files), unlink (also of open files), mkdir/rmdir/rename of directories, stat,
fstat, listdir.

Everything happens below MNT/PREFIX and SHADOW/PREFIX (PREFIX defaults to
dt-SEED); both are wiped at start.  --verify-only compares the two trees and
exits (use it after a remount); --resume verifies them and then carries on
with more operations on them (reads and writes of files from a previous mount).  On the first mismatch it prints the seed, the
operation index, the operation and both outcomes, the recent history, and
exits 1.
"""

import argparse
import errno
import os
import random
import shutil
import stat
import sys

KiB = 1024
MiB = 1024 * KiB


def parse_size(text):
    text = text.strip().upper()
    mult = 1
    if text.endswith("K"):
        mult, text = KiB, text[:-1]
    elif text.endswith("M"):
        mult, text = MiB, text[:-1]
    return int(text) * mult


class Mismatch(Exception):
    pass


def describe(outcome):
    kind, val = outcome
    if kind == "err":
        return "error %s (%s)" % (errno.errorcode.get(val, val), os.strerror(val))
    if isinstance(val, (bytes, bytearray)):
        return "%d bytes" % len(val)
    return repr(val)


def diff_ranges(a, b, gran=4096, limit=6):
    """Byte ranges (at gran granularity) where a and b differ, for reports."""
    out, start = [], None
    n = max(len(a), len(b))
    for i in range(0, n + gran, gran):
        same = i >= n or a[i:i + gran] == b[i:i + gran]
        if not same and start is None:
            start = i
        elif same and start is not None:
            seg = a[start:min(i, len(a))]
            zeros = " (all zeros on kvfs)" if seg and not seg.strip(b"\0") else ""
            out.append("[%d, %d)%s" % (start, min(i, n), zeros))
            start = None
            if len(out) >= limit:
                out.append("...")
                break
    return ", ".join(out)


def first_diff(a, b):
    n = min(len(a), len(b))
    step = 4096
    for i in range(0, n, step):
        if a[i:i + step] != b[i:i + step]:
            for j in range(i, min(i + step, n)):
                if a[j] != b[j]:
                    return j
    return n


class Open:
    """A descriptor pair: fd[0] on kvfs, fd[1] on the shadow."""
    _next = 0

    def __init__(self, rel, flags, fds):
        Open._next += 1
        self.id = Open._next
        self.rel = rel
        self.flags = flags
        self.fd = fds

    def __repr__(self):
        return "fd#%d(%s%s)" % (self.id, self.rel, ",ro" if self.flags & os.O_ACCMODE == os.O_RDONLY
                                 else ",append" if self.flags & os.O_APPEND else "")


class DiffTest:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.roots = [os.path.join(args.mount, args.prefix), os.path.join(args.shadow, args.prefix)]
        self.opens = []
        self.history = []
        self.opno = -1
        self.cur = "setup"
        self.stats = {}
        self.dirs = ["d%d" % i for i in range(args.dirs + 1)]      # one spare name
        self.names = ["f%d" % i for i in range(args.files)]

    # ------------------------------------------------------------ plumbing
    def path(self, side, rel):
        return os.path.join(self.roots[side], rel)

    def fail(self, what, kv, sh):
        raise Mismatch("%s\n    kvfs:   %s\n    shadow: %s" % (what, kv, sh))

    def both(self, fn, norm=None):
        """Run fn(side) on both sides; outcomes must be equal."""
        out = []
        for side in (0, 1):
            try:
                out.append(("ok", fn(side)))
            except OSError as e:
                err = e.errno
                if norm and err in norm:
                    err = norm[err]
                out.append(("err", err))
        kv, sh = out
        if kv != sh:
            if kv[0] == sh[0] == "ok" and isinstance(kv[1], (bytes, bytearray)) \
                    and isinstance(sh[1], (bytes, bytearray)):
                off = first_diff(kv[1], sh[1])
                self.fail("data differs (first difference at byte %d of the result; differing "
                          "ranges: %s)" % (off, diff_ranges(kv[1], sh[1])),
                          "%d bytes, at diff: %r" % (len(kv[1]), bytes(kv[1][off:off + 16])),
                          "%d bytes, at diff: %r" % (len(sh[1]), bytes(sh[1][off:off + 16])))
            self.fail("outcome differs", describe(kv), describe(sh))
        return kv

    def note(self, text):
        self.cur = text
        self.history.append("#%d %s" % (self.opno, text))
        del self.history[:-25]

    def count(self, name):
        self.stats[name] = self.stats.get(name, 0) + 1

    def check_fd_size(self, o):
        self.both(lambda s: os.fstat(o.fd[s]).st_size)

    def check_path(self, rel):
        def st(s):
            r = os.lstat(self.path(s, rel))
            return (stat.S_IFMT(r.st_mode), r.st_size if stat.S_ISREG(r.st_mode) else 0)
        self.both(st)

    def shadow_size(self, o):
        return os.fstat(o.fd[1]).st_size

    # ------------------------------------------------------------ choices
    def pick_dir(self):
        existing = [d for d in self.dirs if os.path.isdir(self.path(1, d))]
        if existing and self.rng.random() < 0.95:
            return self.rng.choice(existing)
        return self.rng.choice(self.dirs)

    def pick_rel(self, exist_bias=0.8):
        if self.rng.random() < exist_bias:
            files = self.shadow_files()
            if files:
                return self.rng.choice(files)
        return os.path.join(self.pick_dir(), self.rng.choice(self.names))

    def shadow_files(self):
        out = []
        root = self.roots[1]
        for d in sorted(os.listdir(root)):
            dp = os.path.join(root, d)
            if os.path.isdir(dp):
                out += [os.path.join(d, f) for f in sorted(os.listdir(dp))]
        return out

    def pick_open(self, writable=False):
        cands = [o for o in self.opens
                 if not writable or o.flags & os.O_ACCMODE != os.O_RDONLY]
        return self.rng.choice(cands) if cands else None

    def pick_len(self):
        r = self.rng.random()
        if r < 0.05:
            return 0
        if r < 0.30:
            return self.rng.randrange(1, 200)
        if r < 0.55:
            return self.rng.randrange(200, 64 * KiB)
        if r < 0.65:
            return self.rng.choice([4096, 65536, 131072, self.a.chunk])
        return self.rng.randrange(1, self.a.max_io + 1)

    def pick_write_off(self, size, n):
        r = self.rng.random()
        chunk = self.a.chunk
        if r < 0.25:
            off = self.rng.randrange(0, size + 1)
        elif r < 0.40:
            off = size                                        # append
        elif r < 0.70:                                        # straddle a chunk boundary
            b = chunk * self.rng.randrange(1, max(2, self.a.max_size // chunk + 1))
            off = max(0, b - self.rng.randrange(0, max(1, n)))
        elif r < 0.85:                                        # far beyond EOF: hole
            off = size + self.rng.randrange(1, max(2 * MiB, 3 * chunk))
        else:
            off = self.rng.randrange(0, self.a.max_size)
        if off + n > self.a.max_size:
            off = max(0, self.a.max_size - n)
        return off

    def pick_trunc_len(self, size):
        r = self.rng.random()
        chunk = self.a.chunk
        if r < 0.15:
            return 0
        if r < 0.45:
            return self.rng.randrange(0, size + 1)
        if r < 0.70:
            b = chunk * self.rng.randrange(0, max(1, self.a.max_size // chunk))
            return max(0, b + self.rng.choice([-1, 0, 1, -4096, 4097]))
        return self.rng.randrange(0, self.a.max_size)

    def gen_data(self, n):
        r = self.rng.random()
        if r < 0.40:
            return self.rng.randbytes(n)
        if r < 0.70:
            pat = self.rng.randbytes(self.rng.randrange(1, 64))
            return (pat * (n // len(pat) + 1))[:n]
        if r < 0.80:
            return bytes(n)
        # fp16-ish: random low byte, few distinct high bytes (shuffle-friendly)
        buf = bytearray(n)
        buf[0::2] = self.rng.randbytes(len(buf[0::2]))
        hi = bytes(b for b in (self.rng.randrange(0x30, 0x40) for _ in range(4)) for _ in range(8))
        nhi = len(buf[1::2])
        buf[1::2] = (hi * (nhi // len(hi) + 1))[:nhi]
        return bytes(buf)

    # ------------------------------------------------------------ operations
    def op_open(self):
        if len(self.opens) >= self.a.max_open:
            self.op_close()
        creating = len(self.shadow_files()) < self.a.files and self.rng.random() < 0.7
        if creating:                                   # keep the population up
            rel = self.pick_rel(0.0)
        elif self.opens and self.rng.random() < 0.5:
            rel = self.rng.choice(self.opens).rel                 # share a file
        else:
            rel = self.pick_rel()
        r = self.rng.random()
        if creating:
            flags = os.O_RDWR | os.O_CREAT
        elif r < 0.15:
            flags = os.O_RDONLY
        elif r < 0.22:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        else:
            flags = os.O_RDWR
            if self.rng.random() < 0.5:
                flags |= os.O_CREAT
            if self.rng.random() < 0.04:
                flags |= os.O_TRUNC
            if self.rng.random() < 0.03:
                flags |= os.O_CREAT | os.O_EXCL
        self.note("open(%s, %s)" % (rel, oct(flags)))
        fds = [None, None]

        def do(s):
            fds[s] = os.open(self.path(s, rel), flags, 0o644)
            return True
        out = []
        for s in (0, 1):
            try:
                do(s)
                out.append(("ok", True))
            except OSError as e:
                out.append(("err", e.errno))
        if out[0] != out[1]:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
            self.fail("outcome differs", describe(out[0]), describe(out[1]))
        if out[0][0] == "ok":
            o = Open(rel, flags, fds)
            self.opens.append(o)
            self.note("  -> %r" % o)
            self.check_fd_size(o)

    def op_close(self):
        o = self.pick_open()
        if not o:
            return
        self.note("close(%r)" % o)
        self.opens.remove(o)
        self.both(lambda s: os.close(o.fd[s]))
        self.check_path(o.rel)

    def op_close_all(self):
        self.note("close all %d fds" % len(self.opens))
        while self.opens:
            o = self.opens.pop()
            self.both(lambda s: os.close(o.fd[s]))

    def op_pwrite(self):
        o = self.pick_open(writable=True)
        if not o:
            return self.op_open()
        n = self.pick_len()
        data = self.gen_data(n)
        size = self.shadow_size(o)
        if o.flags & os.O_APPEND:
            self.note("write(%r, %d bytes) [O_APPEND at %d]" % (o, n, size))
            self.both(lambda s: os.write(o.fd[s], data))
        elif self.rng.random() < 0.15:
            off = self.pick_write_off(size, n)
            self.note("lseek(%r, %d) + write(%d bytes) [size %d]" % (o, off, n, size))
            self.both(lambda s: (os.lseek(o.fd[s], off, os.SEEK_SET), os.write(o.fd[s], data)))
        else:
            off = self.pick_write_off(size, n)
            self.note("pwrite(%r, %d bytes @ %d) [size %d, end %d]" % (o, n, off, size, off + n))
            self.both(lambda s: os.pwrite(o.fd[s], data, off))
        self.check_fd_size(o)

    def op_pread(self):
        o = self.pick_open()
        if not o:
            return self.op_open()
        size = self.shadow_size(o)
        n = self.pick_len()
        r = self.rng.random()
        if r < 0.6:
            off = self.rng.randrange(0, size + 1)
        elif r < 0.85:
            b = self.a.chunk * self.rng.randrange(0, max(1, size // self.a.chunk + 1))
            off = max(0, b - self.rng.randrange(0, max(1, n)))
        else:
            off = size + self.rng.randrange(0, 100 * KiB)
        if self.rng.random() < 0.2:
            self.note("lseek(%r, %d) + read(%d) [size %d]" % (o, off, n, size))
            self.both(lambda s: (os.lseek(o.fd[s], off, os.SEEK_SET), os.read(o.fd[s], n)))
        else:
            self.note("pread(%r, %d @ %d) [size %d]" % (o, n, off, size))
            self.both(lambda s: os.pread(o.fd[s], n, off))

    def op_ftruncate(self):
        o = self.pick_open()
        if not o:
            return self.op_open()
        ln = self.pick_trunc_len(self.shadow_size(o))
        self.note("ftruncate(%r, %d) [size %d]" % (o, ln, self.shadow_size(o)))
        self.both(lambda s: os.ftruncate(o.fd[s], ln))
        self.check_fd_size(o)

    def op_truncate(self):
        rel = self.pick_rel(0.9)
        try:
            size = os.stat(self.path(1, rel)).st_size
        except OSError:
            size = 0
        ln = self.pick_trunc_len(size)
        self.note("truncate(%s, %d) [size %d]" % (rel, ln, size))
        self.both(lambda s: os.truncate(self.path(s, rel), ln))
        self.check_path(rel)

    def op_fsync(self):
        o = self.pick_open()
        if not o:
            return
        self.note("fsync(%r)" % o)
        self.both(lambda s: os.fsync(o.fd[s]))
        self.check_fd_size(o)

    def op_fadvise(self):
        o = self.pick_open()
        if not o:
            return
        self.note("posix_fadvise(%r, DONTNEED)" % o)
        self.both(lambda s: os.posix_fadvise(o.fd[s], 0, 0, os.POSIX_FADV_DONTNEED))

    def op_stat(self):
        if self.opens and self.rng.random() < 0.5:
            o = self.pick_open()
            self.note("fstat(%r)" % o)
            self.check_fd_size(o)
        else:
            rel = self.pick_rel()
            self.note("lstat(%s)" % rel)
            self.check_path(rel)

    def op_rename(self):
        src = self.pick_rel(0.9)
        if self.opens and self.rng.random() < 0.3:
            dst = self.rng.choice(self.opens).rel                  # over an open file
        else:
            dst = self.pick_rel(0.4)
        self.note("rename(%s, %s)" % (src, dst))
        self.both(lambda s: os.rename(self.path(s, src), self.path(s, dst)),
                  norm={errno.EEXIST: errno.ENOTEMPTY})
        self.check_path(src)
        self.check_path(dst)

    def op_unlink(self):
        rel = self.pick_rel(0.9)
        self.note("unlink(%s)" % rel)
        self.both(lambda s: os.unlink(self.path(s, rel)))
        self.check_path(rel)

    def op_dirop(self):
        r = self.rng.random()
        a, b = self.rng.choice(self.dirs), self.rng.choice(self.dirs)
        if r < 0.4:
            self.note("mkdir(%s)" % a)
            self.both(lambda s: os.mkdir(self.path(s, a)))
        elif r < 0.6:
            self.note("rmdir(%s)" % a)
            self.both(lambda s: os.rmdir(self.path(s, a)), norm={errno.EEXIST: errno.ENOTEMPTY})
        else:
            self.note("rename(%s, %s) [dirs]" % (a, b))
            self.both(lambda s: os.rename(self.path(s, a), self.path(s, b)),
                      norm={errno.EEXIST: errno.ENOTEMPTY})
        self.op_listdir(quiet=True)
        # keep --dirs directories around so that files have somewhere to live
        missing = [d for d in self.dirs if not os.path.isdir(self.path(1, d))]
        while len(self.dirs) - len(missing) < self.a.dirs:
            d = missing.pop(0)
            self.note("mkdir(%s) [refill]" % d)
            self.both(lambda s: os.mkdir(self.path(s, d)))

    def op_listdir(self, quiet=False):
        if not quiet:
            self.note("listdir(*)")
        self.both(lambda s: sorted(os.listdir(self.roots[s])))
        for d in self.dirs:
            self.both(lambda s: sorted(os.listdir(self.path(s, d))))

    # ------------------------------------------------------------ full check
    def read_all(self, side, rel):
        with open(self.path(side, rel), "rb") as f:
            return f.read()

    def full_check(self, label):
        self.note("full check (%s)" % label)
        self.op_listdir(quiet=True)
        files = self.shadow_files()
        for rel in files:
            self.cur = "full check (%s): %s" % (label, rel)
            self.check_path(rel)
            if os.path.isfile(self.path(1, rel)):
                self.both(lambda s: self.read_all(s, rel))
        for o in self.opens:
            self.cur = "full check (%s): contents via %r" % (label, o)
            if o.flags & os.O_ACCMODE == os.O_WRONLY:
                continue
            size = self.shadow_size(o)
            self.check_fd_size(o)
            self.both(lambda s: os.pread(o.fd[s], size + 1, 0))
        self.count("full_checks")

    def tree(self, side):
        out = []
        root = self.roots[side]
        for dp, dns, fns in os.walk(root):
            dns.sort()
            for n in sorted(dns + fns):
                p = os.path.join(dp, n)
                st = os.lstat(p)
                out.append((os.path.relpath(p, root), stat.S_IFMT(st.st_mode),
                            st.st_size if stat.S_ISREG(st.st_mode) else 0))
        return out

    def verify(self):
        self.cur = "verify trees"
        kv, sh = self.tree(0), self.tree(1)
        if kv != sh:
            a, b = set(kv), set(sh)
            self.fail("trees differ", "only in kvfs: %s" % sorted(a - b)[:10],
                      "only in shadow: %s" % sorted(b - a)[:10])
        for rel, mode, _ in sh:
            if stat.S_ISREG(mode):
                self.cur = "verify content of %s" % rel
                self.both(lambda s: self.read_all(s, rel))
        return len(sh)

    # ------------------------------------------------------------ driver
    def setup(self):
        for r in self.roots:
            if os.path.lexists(r):
                shutil.rmtree(r)
            os.makedirs(r)
        for d in self.dirs[:-1]:
            self.both(lambda s: os.mkdir(self.path(s, d)))
        for i in range(self.a.files):
            d = self.dirs[i % (len(self.dirs) - 1)]
            rel = os.path.join(d, self.names[i])
            n = self.rng.randrange(0, 2 * self.a.chunk)
            data = self.gen_data(n)

            def mk(s):
                with open(self.path(s, rel), "wb") as f:
                    f.write(data)
            self.note("create %s (%d bytes)" % (rel, n))
            self.both(mk)

    def run(self):
        ops = [
            (self.op_pwrite, 30), (self.op_pread, 22), (self.op_open, 8), (self.op_close, 6),
            (self.op_ftruncate, 4), (self.op_truncate, 2), (self.op_fsync, 3),
            (self.op_fadvise, 3), (self.op_stat, 5), (self.op_rename, 3), (self.op_unlink, 2),
            (self.op_dirop, 1), (self.op_listdir, 1), (self.op_close_all, 1),
        ]
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        if self.a.resume:
            self.verify()              # continue on the trees a previous run left
        else:
            self.setup()
        for self.opno in range(self.a.ops):
            f = self.rng.choices(funcs, weights)[0]
            self.count(f.__name__)
            f()
            if self.a.check_every and (self.opno + 1) % self.a.check_every == 0:
                self.full_check("after op %d" % self.opno)
        self.opno = self.a.ops
        self.full_check("end, fds open")
        self.op_close_all()
        return self.verify()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mount", required=True, help="directory on the kvfs mount")
    ap.add_argument("--shadow", required=True, help="reference directory (e.g. on /dev/shm)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, default=3000)
    ap.add_argument("--files", type=int, default=6, help="file names per directory")
    ap.add_argument("--dirs", type=int, default=2)
    ap.add_argument("--chunk", type=parse_size, default=MiB, help="kvfs chunk size (for boundary-straddling ops)")
    ap.add_argument("--max-io", type=parse_size, default=300 * KiB)
    ap.add_argument("--max-size", type=parse_size, default=4 * MiB)
    ap.add_argument("--max-open", type=int, default=8)
    ap.add_argument("--check-every", type=int, default=100)
    ap.add_argument("--prefix", help="subdirectory used on both sides (default dt-SEED)")
    ap.add_argument("--verify-only", action="store_true", help="only compare the two trees")
    ap.add_argument("--resume", action="store_true",
                    help="do not wipe PREFIX: verify the existing trees, then run --ops more operations")
    args = ap.parse_args()
    if args.prefix is None:
        args.prefix = "dt-%d" % args.seed
    args.max_size = max(args.max_size, 2 * args.chunk + args.max_io)

    t = DiffTest(args)
    try:
        if args.verify_only:
            n = t.verify()
            print("difftest: seed=%d verify-only: %d entries identical" % (args.seed, n))
            return 0
        n = t.run()
    except Mismatch as e:
        print("difftest: MISMATCH seed=%d op=%d: %s" % (args.seed, t.opno, t.cur), file=sys.stderr)
        print("  %s" % e, file=sys.stderr)
        print("  recent operations:", file=sys.stderr)
        for h in t.history:
            print("    " + h, file=sys.stderr)
        if args.verify_only:
            return 1
        print("  reproduce (fresh prefix is wiped automatically): python3 %s --mount %s --shadow %s "
              "--seed %d --ops %d --chunk %d --max-io %d --max-size %d --files %d --dirs %d "
              "--check-every %d" % (sys.argv[0], args.mount, args.shadow, args.seed, t.opno + 1,
                                    args.chunk, args.max_io, args.max_size, args.files, args.dirs,
                                    args.check_every), file=sys.stderr)
        return 1
    print("difftest: seed=%d ops=%d ok, %d entries identical; %s" % (
        args.seed, args.ops, n, ", ".join("%s=%d" % kv for kv in sorted(t.stats.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
