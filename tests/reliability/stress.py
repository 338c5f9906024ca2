#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Concurrency stress for a mounted kvfs under a small capacity (stdlib only).

Writer processes (each with several threads) and reader processes (each with
several threads) work on overlapping contexts of a few namespaces while the
cap keeps eviction running:

  * immutable contexts, written the way an engine does: files of a fresh
    <ns>/.tmp-UID/ (plus a file "uid" naming it), closed, then the directory
    renamed into place under a name from a small shared pool <ns>/c-K:
    rename() when the name is free, else RENAME_EXCHANGE with the context
    there (which is then deleted) -- so writers replace each other's
    contexts under the readers' feet; now and then a context is pinned for
    a moment, or removed;
  * mutable contexts <ns>/m-K/layer_N shared by all writers, rewritten in
    place (O_TRUNC, overwrite from offset 0, append, truncate, unlink); a
    writer holds an flock on the file's lock (outside the mount) for one
    step, so one file has one writer at a time, but any file can be read at
    any moment; evicted ones are made again;
  * a thread now and then writes a size to .kvfs/evict (ENOSPC when open or
    pinned contexts hold more than that is counted, not an error).

What a read must return (kvgen.py describes the contents):

  * open() of anything may fail with ENOENT (evicted, replaced or deleted);
    once a file is open, reading it to the end must not fail;
  * an immutable file (found through a directory fd of a c-K context, whose
    "uid" file names the contents) reads back exactly as written, complete:
    its files were closed before the rename that made them visible, and
    nothing writes them again;
  * a mutable file may be read while its writer is halfway through: kvfs
    serves what the daemon holds (the new bytes written so far over the old
    ones) and the kernel page cache may hand a read part of a page that a
    concurrent write is copying, so every byte must equal the byte at that
    offset of some write to that file ever made -- a mix of versions, never
    bytes that were not written there.  Zeros are allowed only at offsets a
    truncate of that file (truncate(), O_TRUNC, or ftruncate() of an
    overwrite) running during the read had just cut off: the kernel zero-fills
    the page a read racing a truncate gets short from the daemon and keeps
    the old size while the truncate is in flight.

A watchdog fails the run when no operation at all completes for --stall
seconds, or one operation takes longer than --hang seconds, after dumping
the daemon's threads with gdb (when installed).  A sampler reads .kvfs/stats
(strictly, tests/prom_check.py) every 20 ms and fails the run if
kvfs_stored_bytes ever exceeds the cap plus --slack.

    stress.py --mnt M --work DIR --pid DAEMON_PID --cap BYTES --slack BYTES
              --seed N [--seconds S] [--writers P] [--wthreads T]
              [--readers P] [--rthreads T] [--stall S] [--hang S]

Prints a summary; exit status 1 on any violation (all are printed).
"""

import argparse
import ctypes
import errno
import fcntl
import json
import mmap
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import kvgen  # noqa: E402
from proc import threads_of  # noqa: E402
import prom_check  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
NSS = ("ns0", "ns1")
POOL = 6          # c-K names per namespace
MUT = 3           # m-K contexts per namespace
LAYERS = 4
RENAME_EXCHANGE = 2
GONE = (errno.ENOENT, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST)
SLOTS = 64


def now():
    return time.monotonic()


# ------------------------------------------------------------- heartbeat ----
class Beats:
    """Per-thread [last completion, current op start, ops] in shared memory."""

    FMT = "ddq"

    def __init__(self):
        self.size = struct.calcsize(self.FMT)
        self.m = mmap.mmap(-1, self.size * SLOTS + 8)
        self.used = 0

    def slot(self):
        self.used += 1
        return self.used - 1

    def start(self, s):
        last, _, n = struct.unpack_from(self.FMT, self.m, s * self.size)
        struct.pack_into(self.FMT, self.m, s * self.size, last, now(), n)

    def done(self, s):
        _, _, n = struct.unpack_from(self.FMT, self.m, s * self.size)
        struct.pack_into(self.FMT, self.m, s * self.size, now(), 0.0, n + 1)

    def get(self, s):
        return struct.unpack_from(self.FMT, self.m, s * self.size)

    def stop(self):
        self.m[-8:] = b"stopstop"

    def stopped(self):
        return self.m[-8:] == b"stopstop"


class Log:
    """JSON lines, one file per process, appended under a lock."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def put(self, rec):
        with self.lock:
            os.write(self.fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())


def load_lines(work, prefix):
    out = []
    for name in sorted(os.listdir(work)):
        if name.startswith(prefix) and name.endswith(".jl"):
            with open(os.path.join(work, name)) as f:
                out += [json.loads(line) for line in f if line.endswith("\n")]
    return out


class Registry:
    """fid -> {seed: size}: what each write to a file put there."""

    def __init__(self, path):
        self.path, self.seeds, self.off = path, {}, 0
        self.lock = threading.Lock()

    def reload(self):
        with self.lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.off)
                    data = f.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1
            self.off += end
            for line in data[:end].decode().splitlines():
                fid, seed, size = line.rsplit(" ", 2)
                self.seeds.setdefault(fid, {})[int(seed)] = int(size)

    def get(self, fid):
        if fid not in self.seeds:
            self.reload()
        return self.seeds.get(fid, {})


# ----------------------------------------------------------------- writer ----
def pick_size(rng):
    r = rng.random()
    if r < 0.1:
        return rng.randrange(0, 4096)
    if r < 0.5:
        return rng.randrange(4096, 512 * KiB)
    return rng.randrange(512 * KiB, 3 * MiB)


libc = ctypes.CDLL(None, use_errno=True)


def rename_exchange(a, b):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), RENAME_EXCHANGE):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


class Writer:
    def __init__(self, a, w, t, beats, slot, log, regfd):
        self.a, self.w, self.t = a, w, t
        self.rng = random.Random("%d/w%d/%d" % (a.seed, w, t))
        self.beats, self.slot, self.log, self.regfd = beats, slot, log, regfd
        self.gen = 0
        self.counts = {}

    def op(self, what, fn):
        """Run one operation with the heartbeat; expected errors -> False."""
        self.beats.start(self.slot)
        t0 = now()
        try:
            fn()
            ok = True
        except OSError as e:
            if e.errno in GONE or e.errno == errno.ENOSPC:
                key = "%s:%s" % (what, errno.errorcode[e.errno])
                self.counts[key] = self.counts.get(key, 0) + 1
                ok = False
            else:
                self.log.put({"error": "%s: %s" % (what, e), "t": now(), "who": "w%d.%d" % (self.w, self.t)})
                ok = False
        self.beats.done(self.slot)
        self.counts[what] = self.counts.get(what, 0) + 1
        return ok, t0

    def write_file(self, path, fid, size, flags=os.O_CREAT | os.O_EXCL, a=0, final=None):
        seed = self.rng.randrange(1, 1 << 31)
        self.a_reg(fid, seed, a + size)
        data = kvgen.stream(fid, seed, a, a + size)
        io = self.rng.choice([4096, 65536, 1 << 20, 300000])
        fd = os.open(path, os.O_WRONLY | flags, 0o644)
        try:
            if a and not flags & os.O_APPEND:
                os.lseek(fd, a, os.SEEK_SET)
            pos = 0
            while pos < size:
                pos += os.write(fd, data[pos:pos + io])
            if final is not None:
                os.ftruncate(fd, final)
            if self.rng.random() < 0.2:
                os.fsync(fd)
        finally:
            os.close(fd)

    def a_reg(self, fid, seed, size):
        os.write(self.regfd, ("%s %d %d\n" % (fid, seed, size)).encode())

    # an engine's context: staged, then renamed (or exchanged) into place
    def context(self):
        self.gen += 1
        uid = "w%dt%dg%d" % (self.w, self.t, self.gen)
        ns = self.rng.choice(NSS)
        tmp = os.path.join(self.a.mnt, ns, ".tmp-" + uid)

        def stage():
            os.mkdir(tmp)
            with open(os.path.join(tmp, "uid"), "w") as f:
                f.write(uid)
            for i in range(self.rng.randrange(1, LAYERS + 1)):
                self.write_file(os.path.join(tmp, "layer_%d" % i), "%s/layer_%d" % (uid, i),
                                pick_size(self.rng))
        ok, _ = self.op("stage", stage)
        if not ok:
            self.op("rm-staged", lambda: shutil.rmtree(tmp))
            return
        dst = os.path.join(self.a.mnt, ns, "c-%d" % self.rng.randrange(POOL))

        def publish():
            if os.path.isdir(dst):
                rename_exchange(tmp, dst)       # the old context is now at tmp
                shutil.rmtree(tmp)
            else:
                os.rename(tmp, dst)
        ok, _ = self.op("publish", publish)
        if not ok:
            self.op("rm-staged", lambda: shutil.rmtree(tmp))

    def mutable(self):
        ns = self.rng.choice(NSS)
        m = "m-%d" % self.rng.randrange(MUT)
        f = "layer_%d" % self.rng.randrange(LAYERS)
        d = os.path.join(self.a.mnt, ns, m)
        path = os.path.join(d, f)
        fid = "%s/%s/%s" % (ns, m, f)
        lockp = os.path.join(self.a.work, "locks", fid.replace("/", "_"))
        lk = os.open(lockp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = -1
            r = self.rng.random()
            rec = {"fid": fid, "who": "w%d.%d" % (self.w, self.t)}
            if size < 0:
                rec["op"] = "create"
                fn = lambda: (os.makedirs(d, exist_ok=True),  # noqa: E731
                              self.write_file(path, fid, pick_size(self.rng), os.O_CREAT | os.O_TRUNC))
            elif r < 0.3:
                rec["op"] = "trunc"
                fn = lambda: self.write_file(path, fid, pick_size(self.rng), os.O_TRUNC)  # noqa: E731
            elif r < 0.55:
                n = pick_size(self.rng)
                rec["op"], rec["final"] = "rplus", (n if n < size and self.rng.random() < 0.5 else None)
                fn = lambda: self.write_file(path, fid, n, 0, 0, rec["final"])  # noqa: E731
            elif r < 0.75:
                rec["op"] = "append"
                fn = lambda: self.write_file(path, fid, self.rng.randrange(1, 256 * KiB),  # noqa: E731
                                             os.O_APPEND, size)
            elif r < 0.92:
                rec["op"], rec["size"] = "truncate", self.rng.randrange(0, size + 1)
                fn = lambda: os.truncate(path, rec["size"])  # noqa: E731
            else:
                rec["op"] = "unlink"
                fn = lambda: os.unlink(path)  # noqa: E731
            ok, t0 = self.op("mut-" + rec["op"], fn)
            rec["t0"], rec["t1"], rec["ok"] = t0, now(), ok
            self.log.put(rec)
        finally:
            os.close(lk)

    def pin_or_remove(self):
        ns = self.rng.choice(NSS)
        d = os.path.join(self.a.mnt, ns, "c-%d" % self.rng.randrange(POOL))
        if self.rng.random() < 0.5:
            def pin():
                os.setxattr(d, "user.kvfs.pin", b"1")
                time.sleep(0.2)
                os.setxattr(d, "user.kvfs.pin", b"0")
            self.op("pin", pin)
        else:
            uid = "w%dt%drm%d" % (self.w, self.t, self.gen)
            tmp = os.path.join(self.a.mnt, ns, ".rm-" + uid)
            self.op("remove", lambda: (os.rename(d, tmp), shutil.rmtree(tmp)))

    def run(self):
        while not self.beats.stopped():
            r = self.rng.random()
            if r < 0.45:
                self.context()
            elif r < 0.95:
                self.mutable()
            else:
                self.pin_or_remove()
        self.log.put({"counts": self.counts})


# ----------------------------------------------------------------- reader ----
class Reader:
    def __init__(self, a, k, beats, slot, log, reg):
        self.a, self.k = a, k
        self.rng = random.Random("%d/r%d" % (a.seed, k))
        self.beats, self.slot, self.log, self.reg = beats, slot, log, reg
        self.counts = {}

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def read_fd(self, fd):
        parts = []
        while True:
            b = os.read(fd, self.rng.choice([4096, 128 * KiB, 1 << 20]))
            if not b:
                return b"".join(parts)
            parts.append(b)

    def read_at(self, name, dfd):
        """open (may fail: gone), then read to the end (must not fail)."""
        fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
        try:
            return self.read_fd(fd)
        except OSError as e:
            raise Broken("read of an open file failed: %s" % e)
        finally:
            os.close(fd)

    def bad(self, what, path, t0, **kw):
        rec = {"garbage": what, "path": path, "t0": t0, "t1": now(), "who": "r%d" % self.k}
        rec.update(kw)
        self.log.put(rec)

    def immutable(self, path):
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            uid = self.read_at("uid", dfd).decode()
            if not uid:
                raise Broken("empty uid file")
            for f in sorted(os.listdir(dfd)):
                if f == "uid":
                    continue
                t0 = now()
                data = self.read_at(f, dfd)
                fid = "%s/%s" % (uid, f)
                v = self.reg.get(fid)
                if len(v) != 1:
                    self.reg.reload()
                    v = self.reg.get(fid)
                if len(v) != 1:
                    self.bad("%d bytes in a file the writers never wrote as %s" % (len(data), fid), path + "/" + f, t0)
                    continue
                (seed, size), = v.items()
                want = kvgen.stream(fid, seed, 0, size)
                if data != want:
                    err = kvgen.check_bytes(fid, data, [seed])
                    self.bad("%d bytes, not the complete version of %d bytes (%s)" % (
                        len(data), size, err or "a prefix or a mix"), path + "/" + f, t0)
                self.count("immutable-file")
        finally:
            os.close(dfd)

    def mutable(self, path, rel):
        for f in sorted(os.listdir(path)):
            t0 = now()
            data = self._read(path, f)
            if data is None:
                continue
            fid = "%s/%s" % (rel, f)
            seeds = list(self.reg.get(fid))
            err = kvgen.check_bytes(fid, data, seeds)
            if err:
                self.reg.reload()
                seeds = list(self.reg.get(fid))
                err = kvgen.check_bytes(fid, data, seeds)
            if err:
                zf = None
                if kvgen.check_bytes(fid, data, seeds, 0) is None:
                    lo, hi = 0, len(data)
                    while lo < hi:
                        mid = (lo + hi + 1) // 2
                        if kvgen.check_bytes(fid, data, seeds, mid) is None:
                            lo = mid
                        else:
                            hi = mid - 1
                    zf = lo
                self.bad(err, path + "/" + f, t0, fid=fid, zeros_from=zf)
            self.count("mutable-file")

    def _read(self, d, f):
        try:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
        except OSError as e:
            if e.errno in GONE:
                return None
            raise
        try:
            return self.read_fd(fd)
        except OSError as e:
            raise Broken("read of an open file failed: %s" % e)
        finally:
            os.close(fd)

    def run(self):
        while not self.beats.stopped():
            ns = self.rng.choice(NSS)
            self.beats.start(self.slot)
            try:
                names = os.listdir(os.path.join(self.a.mnt, ns))
                if names:
                    name = self.rng.choice(names)
                    path = os.path.join(self.a.mnt, ns, name)
                    if name.startswith("c-"):
                        self.immutable(path)
                    elif name.startswith("m-"):
                        self.mutable(path, "%s/%s" % (ns, name))
            except Broken as e:
                self.log.put({"error": str(e), "t": now(), "who": "r%d" % self.k})
            except OSError as e:
                if e.errno in GONE:
                    self.count("gone")
                else:
                    self.log.put({"error": "%s" % e, "t": now(), "who": "r%d" % self.k})
            self.beats.done(self.slot)
        self.log.put({"counts": self.counts})


class Broken(Exception):
    pass


# ------------------------------------------------------------------ driver ----
def fork(fn):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 2
        os._exit(code)
    return pid


def threads_proc(objs):
    ts = [threading.Thread(target=o.run) for o in objs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def dump_stacks(pid, out):
    gdb = shutil.which("gdb")
    if not gdb:
        return "(gdb not installed: no stacks)"
    try:
        r = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=120)
        text = r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        text = "(gdb timed out)"
    with open(out, "w") as f:
        f.write(text)
    return text


def sampler(a, box):
    stats = os.path.join(a.mnt, ".kvfs", "stats")
    while not box["stop"]:
        try:
            with open(stats) as f:
                text = f.read()
            series, _ = prom_check.parse(text)
            v = int(series[("kvfs_stored_bytes", ())])
            box["n"] += 1
            box["max"] = max(box["max"], v)
            if v > a.cap + a.slack and len(box["over"]) < 5:
                box["over"].append(v)
        except (OSError, prom_check.PromError, KeyError, ValueError) as e:
            box["errors"].append(str(e))
            if len(box["errors"]) > 5:
                return
        time.sleep(0.02)


def evictor(a, box):
    rng = random.Random("%d/evict" % a.seed)
    while not box["stop"]:
        time.sleep(rng.uniform(0.5, 3))
        try:
            with open(os.path.join(a.mnt, ".kvfs", "evict"), "w") as f:
                f.write("%d\n" % rng.randrange(0, a.cap))
            box["evicts"] += 1
        except OSError as e:
            if e.errno == errno.ENOSPC:
                box["evict_short"] += 1     # open or pinned contexts hold more than the target
            else:
                box["errors"].append("writing .kvfs/evict: %s" % e)


def truncated_meanwhile(r, muts):
    """A truncate of r's file ran during the read and cut at or below where
    the zeros start (see the module's docstring)."""
    if r.get("zeros_from") is None:
        return False
    for m in muts:
        if m["fid"] != r.get("fid") or m["t0"] > r["t1"] or m["t1"] < r["t0"]:
            continue
        if m["op"] == "trunc":
            return True
        cut = m.get("size") if m["op"] == "truncate" else m.get("final")
        if cut is not None and r["zeros_from"] >= cut:
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnt", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--cap", type=int, required=True)
    ap.add_argument("--slack", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--wthreads", type=int, default=2)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--rthreads", type=int, default=2)
    ap.add_argument("--stall", type=float, default=20)
    ap.add_argument("--hang", type=float, default=60)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.work, "locks"), exist_ok=True)
    for ns in NSS:
        os.makedirs(os.path.join(a.mnt, ns), exist_ok=True)
    regpath = os.path.join(a.work, "registry")
    beats = Beats()
    pids, names = [], {}
    for w in range(a.writers):
        slots = [beats.slot() for _ in range(a.wthreads)]

        def wproc(w=w, slots=slots):
            log = Log(os.path.join(a.work, "w%d.jl" % w))
            regfd = os.open(regpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            threads_proc([Writer(a, w, t, beats, s, log, regfd) for t, s in enumerate(slots)])
        pids.append(fork(wproc))
        for t, s in enumerate(slots):
            names[s] = "writer %d thread %d" % (w, t)
    for r in range(a.readers):
        slots = [beats.slot() for _ in range(a.rthreads)]

        def rproc(r=r, slots=slots):
            log = Log(os.path.join(a.work, "r%d.jl" % r))
            reg = Registry(regpath)
            threads_proc([Reader(a, r * a.rthreads + k, beats, s, log, reg) for k, s in enumerate(slots)])
        pids.append(fork(rproc))
        for k, s in enumerate(slots):
            names[s] = "reader %d thread %d" % (r, k)
    box = {"stop": False, "n": 0, "max": 0, "over": [], "errors": [], "evicts": 0, "evict_short": 0}
    ths = [threading.Thread(target=sampler, args=(a, box), daemon=True),
           threading.Thread(target=evictor, args=(a, box), daemon=True)]
    for t in ths:
        t.start()

    problems = []
    t_start = now()
    stuck = None
    while now() - t_start < a.seconds:
        time.sleep(0.5)
        t = now()
        last = max(beats.get(s)[0] for s in names) or t_start
        if t - max(last, t_start) > a.stall:
            stuck = "no operation completed for %.0f s" % (t - max(last, t_start))
        for s in names:
            _, cur, _ = beats.get(s)
            if cur and t - cur > a.hang:
                stuck = "%s has been in one operation for %.0f s" % (names[s], t - cur)
        if not os.path.exists("/proc/%d" % a.pid):
            problems.append("the daemon (pid %d) is gone" % a.pid)
            break
        if stuck:
            break
    if stuck:
        out = os.path.join(a.work, "stacks.txt")
        text = dump_stacks(a.pid, out)
        problems.append("DEADLOCK suspected: %s; the daemon's threads (%s):\n%s" % (stuck, out, text[-20000:]))
        busy = [(names[s], t - beats.get(s)[1]) for s in names if beats.get(s)[1]]
        problems.append("operations in flight: %s" % ", ".join("%s for %.0f s" % b for b in busy))
    beats.stop()
    box["stop"] = True
    t_stop = now()
    left = set(pids)
    while left and now() - t_stop < (5 if stuck else a.hang):
        for p in list(left):
            r, st = os.waitpid(p, os.WNOHANG)
            if r:
                left.discard(p)
                if os.waitstatus_to_exitcode(st) != 0:
                    problems.append("worker process %d exited with %d" % (p, os.waitstatus_to_exitcode(st)))
        time.sleep(0.05)
    if left and not stuck:
        text = dump_stacks(a.pid, os.path.join(a.work, "stacks.txt"))
        problems.append("DEADLOCK suspected: %d worker process(es) did not finish within %.0f s of the stop; "
                        "the daemon's threads:\n%s" % (len(left), a.hang, text[-20000:]))
    for p in left:
        problems.append("worker process %d, stuck; its threads in the kernel:\n        %s" % (p, threads_of(p)))
        os.kill(p, signal.SIGKILL)
    # a process waiting for a reply the daemon has already taken cannot be
    # killed until the daemon answers or dies: do not wait for it forever
    t_kill = now()
    while left and now() - t_kill < 5:
        for p in list(left):
            if os.waitpid(p, os.WNOHANG)[0]:
                left.discard(p)
        time.sleep(0.05)
    if left:
        problems.append("%d worker process(es) survive SIGKILL (left to the daemon's end)" % len(left))
    for t in ths:
        t.join(timeout=10)
    if any(t.is_alive() for t in ths):
        problems.append("the stats sampler or the evict thread is stuck in a call to the mount")

    muts = [m for m in load_lines(a.work, "w") if "fid" in m]
    counts, allowed = {}, 0
    for rec in load_lines(a.work, "w") + load_lines(a.work, "r"):
        if "counts" in rec:
            for k, v in rec["counts"].items():
                counts[k] = counts.get(k, 0) + v
        elif "error" in rec:
            problems.append("%s: %s" % (rec["who"], rec["error"]))
        elif "garbage" in rec:
            if truncated_meanwhile(rec, muts):
                allowed += 1
                continue
            ops = [m for m in muts if m["fid"] == rec.get("fid") and m["t1"] >= rec["t0"] - 1 and m["t0"] <= rec["t1"]]
            problems.append("%s read %s: %s (read ran %.3f..%.3f; writes on it then: %s)" % (
                rec["who"], rec["path"], rec["garbage"], rec["t0"] - t_start, rec["t1"] - t_start,
                json.dumps([{k: (round(v - t_start, 3) if k in ("t0", "t1") else v) for k, v in m.items()}
                            for m in ops])))
    if box["errors"]:
        problems.append("stats sampler: %s" % "; ".join(box["errors"][:5]))
    if box["over"]:
        problems.append("kvfs_stored_bytes above cap %d + slack %d: %s" % (a.cap, a.slack, box["over"]))
    if box["n"] < 50:
        problems.append("the sampler read the stats only %d times" % box["n"])
    ops = sum(v for k, v in counts.items() if ":" not in k)
    print("stress: %.0f s, %d operations: %s" % (now() - t_start, ops, json.dumps(counts, sort_keys=True)))
    print("stress: stats read %d times, max stored %d (cap %d + slack %d), %d manual evictions "
          "(%d more ended ENOSPC: open or pinned contexts held more than the target); "
          "%d read(s) saw zeros a concurrent truncate cut off (allowed)" % (
              box["n"], box["max"], a.cap, a.slack, box["evicts"], box["evict_short"], allowed))
    for p in problems:
        print("VIOLATION: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
