#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Crash-consistency loop for kvfs (python3 stdlib only): seeded iterations of

  1. start `kvfs -f` on STORE (codec, shuffle and, in some iterations, a small
     capacity chosen per iteration; the store has 64 KiB chunks);
  2. writer processes create, rewrite (O_TRUNC, in place, append), truncate
     and delete files of their own contexts <ns>/c-UID/layer_N, stage new
     contexts as <ns>/.tmp-UID and rename them into place, and remove
     contexts (every 5th iteration instead: files of 1-3 MiB in 4 KiB
     writes); reader threads in another process read whatever they find,
     half the time the files being written, and check every byte
     (kvgen.check_bytes); "closer" threads open() and close() the files
     being written back to back, so that they are published halfway; in
     eviction iterations (every 4th, under a 1.5-4 MiB cap) a thread also
     writes a size to .kvfs/evict;
  3. SIGKILL the daemon after a random delay (in eviction iterations often a
     few milliseconds after a manual eviction starts); kvfs must be gone
     within 10 s (else its threads are reported and its connection aborted
     through fusectl, so that the loop can go on; --allow-stuck-kill only
     counts such kills);
  4. reap everything, `fusermount3 -uz` the dead mount, start kvfs again on
     the same STORE without a cap (it must start), check the whole tree
     against the journals, unmount cleanly, run `kvfsctl info STORE`, and
     (--expect-reclaim) check that the segments hold no more than the live
     records and the blocks they share: the restart gives back what the
     crash left (docs/reliability.md).

Every writer step is journaled (outside the mount, fsync'ed) before it
starts and again when it has returned; a write's "done" comes only after its
close() (and fsync(), when it does one) returned 0.

What the tree must hold after the restart (docs/format.md: a file's chunk
list, size and mtime reach the index in one transaction at every close() of
any descriptor, fsync() and release; namespace operations commit at once):

  * a step that completed before the kill: its result, byte-exact;
  * the one step of a writer that was in flight at the kill (or that failed
    in an eviction iteration), since the daemon may have committed it
    without its reply reaching the writer:
      create:   absent, or an empty file, or any prefix of the new content
                (a reader's close() publishes what the daemon holds);
      rewrite:  the old content, or the new content written over it up to
                any byte k (O_TRUNC: over nothing; append: from the old
                end), or, for an in-place rewrite that ends with ftruncate,
                the finished new content;
      truncate: old or truncated;  unlink/rmdir: present or absent;
      mkdir:    present (empty) or absent;  rename: under one of the names;
  * nothing else: no file or directory the journal does not account for
    (a file deleted before the kill stays deleted), no byte that none of
    these states has at that offset (zeros in place of data included);
  * in eviction iterations a context may also be gone, but only whole: if
    its directory exists, its files follow the rules above.

With --strict-publish, a write in flight at the kill may leave only the old
or the new content (and, for a create, an empty file): what
docs/reliability.md says, but not what kvfs does, since any close() of the
file, on any descriptor, publishes what the daemon holds of it.

Reads while the daemon runs (reader threads) must return, for each byte,
the byte at that offset of some write to that file; a read that raced a
truncate of the file may also see zeros where the truncate cut it (the
kernel's doing: see truncated_meanwhile()).

Usage (see tests/integration/test_crash.sh):
    crash.py loop --kvfs K --kvfsctl C --store S --mnt M --work DIR
                  --seed N [--iters N] [--seconds S] [--min-iters N]
                  [--expect-reclaim] [--strict-publish] [--allow-stuck-kill]
    crash.py verify --mnt M --work DIR      (the model of the last loop)
Exit status 1 on any violation (all are printed), 0 otherwise.
"""

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvgen  # noqa: E402
from proc import abort_connection, conn_of, mounted, threads_of  # noqa: E402

NS = "ns"
KiB = 1024
FATAL = (errno.ENOTCONN, errno.ECONNABORTED)


def now():
    return time.monotonic()


def slack_of(store, files):
    """Space that punching holes cannot give back: the 4 KiB blocks a live
    record shares with freed neighbours (two per record; the files here have
    at most 7 chunks, the large ones 48) and each segment's header block."""
    segs = len(os.listdir(os.path.join(store, "segments")))
    return files * 48 * 8192 + segs * 4096 + 65536


def seg_usage(store):
    d = os.path.join(store, "segments")
    total = 0
    for e in os.scandir(d):
        total += e.stat(follow_symlinks=False).st_blocks * 512
    return total


# --------------------------------------------------------------- journal ----
class Journal:
    """Append-only JSON lines, fsync'ed, outside the mount."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def put(self, rec, sync=True):
        os.write(self.fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
        if sync:
            os.fsync(self.fd)


def read_journal(path):
    steps, outcome = [], {}
    if not os.path.exists(path):
        return steps, outcome
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            r = json.loads(line)
            if "op" in r:
                steps.append(r)
            else:
                outcome[r["n"]] = r
    return steps, outcome


# ----------------------------------------------------------------- sizes ----
def pick_size(rng):
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.25:
        return rng.randrange(1, 4096)
    if r < 0.6:
        return rng.randrange(4096, 64 * KiB + 1)
    return rng.randrange(64 * KiB, 448 * KiB)


def pick_io(rng):
    return rng.choice([1000, 4096, 4096, 4096 * 3, 65536, 100000, 262144, 1 << 20])


# ----------------------------------------------------------------- writer ----
class Writer:
    """One writer process: its own contexts, one step at a time."""

    def __init__(self, a, w, it, ctxs, evict, t_end, big=False):
        self.mnt, self.w, self.it = a.mnt, w, it
        self.rng = random.Random("%d/%d/%d" % (a.seed, it, w))
        self.j = Journal(os.path.join(a.work, "it%d-w%d.jl" % (it, w)))
        self.reg = os.open(os.path.join(a.work, "registry"),
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.ctxs = ctxs          # uid -> {"name": str, "files": {f: segs}}
        self.evict = evict
        self.big = big
        self.t_end = t_end
        self.n = 0
        self.gen = 0

    def path(self, uid, f=None):
        p = os.path.join(self.mnt, NS, self.ctxs[uid]["name"])
        return p if f is None else os.path.join(p, f)

    def register(self, fid, seed):
        os.write(self.reg, ("%s %d\n" % (fid, seed)).encode())

    def step(self, rec, fn):
        """Journal rec, run fn, journal the outcome. True if it completed."""
        self.n += 1
        rec["n"] = self.n
        rec["t0"] = now()
        self.j.put(rec, sync=False)
        try:
            fn()
        except OSError as e:
            self.j.put({"n": self.n, "err": e.errno, "t": now(), "msg": str(e)})
            if e.errno in FATAL:
                raise SystemExit(0)
            if self.evict and e.errno in (errno.ENOENT, errno.ENOSPC):
                # its context was evicted (or no room): leave it alone
                self.ctxs.pop(rec["uid"], None)
                return False
            raise SystemExit(0)
        self.j.put({"n": self.n, "ok": 1, "t": now()})
        return True

    def write(self, uid, f, mode, size, io=None):
        segs = self.ctxs[uid]["files"].get(f, [])
        seed = self.rng.randrange(1, 1 << 31)
        base = kvgen.size_of(segs)
        a = base if mode == "append" else 0
        final = None
        if mode == "rplus" and size < base and self.rng.random() < 0.7:
            final = size
        fsync = self.rng.random() < 0.3
        fid = uid + "/" + f
        self.register(fid, seed)
        path = self.path(uid, f)
        flags = {"create": os.O_CREAT | os.O_EXCL, "trunc": os.O_TRUNC,
                 "rplus": 0, "append": os.O_APPEND}[mode] | os.O_WRONLY
        ios = [io] if io else [pick_io(self.rng)] * 2 + [pick_io(self.rng) for _ in range(2)]

        def run():
            data = kvgen.stream(fid, seed, a, a + size)
            fd = os.open(path, flags, 0o644)
            try:
                pos, i = 0, 0
                while pos < size:
                    pos += os.write(fd, data[pos:pos + ios[i % len(ios)]])
                    i += 1
                if final is not None:
                    os.ftruncate(fd, final)
                if fsync:
                    os.fsync(fd)
            except OSError:
                try:
                    os.close(fd)
                except OSError:
                    pass
                raise
            os.close(fd)

        rec = {"op": "write", "uid": uid, "f": f, "mode": mode, "seed": seed,
               "a": a, "L": size, "final": final, "fsync": fsync}
        if self.step(rec, run):
            new = kvgen.overlay([] if mode in ("create", "trunc") else segs, a, a + size, seed)
            self.ctxs[uid]["files"][f] = new if final is None else kvgen.clip(new, final)

    def new_ctx(self, staged):
        self.gen += 1
        uid = "i%dw%dg%d" % (self.it, self.w, self.gen)
        name = (".tmp-" if staged else "c-") + uid
        self.ctxs[uid] = {"name": name, "files": {}}
        if not self.step({"op": "mkdir", "uid": uid, "name": name},
                         lambda: os.mkdir(self.path(uid))):
            return
        for i in range(self.rng.randrange(1, 5)):
            if uid not in self.ctxs or now() > self.t_end:
                return
            self.write(uid, "layer_%d" % i, "create", pick_size(self.rng))
        if staged and uid in self.ctxs:
            to = "c-" + uid
            if self.step({"op": "rename", "uid": uid, "to": to},
                         lambda: os.rename(self.path(uid), os.path.join(self.mnt, NS, to))):
                self.ctxs[uid]["name"] = to

    def rm_ctx(self, uid):
        for f in sorted(self.ctxs[uid]["files"]):
            if uid not in self.ctxs:
                return
            self.unlink(uid, f)
        if uid in self.ctxs and self.step({"op": "rmdir", "uid": uid},
                                          lambda: os.rmdir(self.path(uid))):
            del self.ctxs[uid]

    def unlink(self, uid, f):
        if self.step({"op": "unlink", "uid": uid, "f": f}, lambda: os.unlink(self.path(uid, f))):
            del self.ctxs[uid]["files"][f]

    def truncate(self, uid, f):
        size = kvgen.size_of(self.ctxs[uid]["files"][f])
        n = self.rng.randrange(0, size) if size else 0
        if self.step({"op": "truncate", "uid": uid, "f": f, "size": n},
                     lambda: os.truncate(self.path(uid, f), n)):
            self.ctxs[uid]["files"][f] = kvgen.clip(self.ctxs[uid]["files"][f], n)

    def run_big(self):
        """Large files in 4 KiB writes, one after another: with the readers'
        closes that publish them halfway, a kill finds one mid-write."""
        while now() < self.t_end:
            if len(self.ctxs) > 3:
                self.rm_ctx(self.rng.choice(sorted(self.ctxs)))
                continue
            self.gen += 1
            uid = "i%dw%dg%d" % (self.it, self.w, self.gen)
            self.ctxs[uid] = {"name": "c-" + uid, "files": {}}
            if self.step({"op": "mkdir", "uid": uid, "name": "c-" + uid},
                         lambda: os.mkdir(self.path(uid))):
                self.write(uid, "layer_0", "create", self.rng.randrange(1 << 20, 3 << 20), 4096)

    def run(self):
        rng = self.rng
        if self.big:
            return self.run_big()
        while now() < self.t_end:
            files = [(u, f) for u in sorted(self.ctxs) for f in sorted(self.ctxs[u]["files"])
                     if self.ctxs[u]["name"].startswith("c-")]
            r = rng.random()
            if len(self.ctxs) < 2 or (r < 0.25 and len(self.ctxs) < 6):
                self.new_ctx(staged=rng.random() < 0.6)
            elif r < 0.35 or len(self.ctxs) > 6:
                self.rm_ctx(rng.choice(sorted(self.ctxs)))
            elif not files:
                continue
            elif r < 0.50:
                u, f = rng.choice(files)
                self.write(u, f, "trunc", pick_size(rng))
            elif r < 0.62:
                u, f = rng.choice(files)
                self.write(u, f, "rplus", pick_size(rng))
            elif r < 0.72:
                u, f = rng.choice(files)
                self.write(u, f, "append", rng.randrange(1, 96 * KiB))
            elif r < 0.80:
                self.truncate(*rng.choice(files))
            elif r < 0.87:
                self.unlink(*rng.choice(files))
            else:
                u = rng.choice(sorted({u for u, _ in files}))
                fs = self.ctxs[u]["files"]
                f = next("layer_%d" % i for i in range(100) if "layer_%d" % i not in fs)
                self.write(u, f, "create", pick_size(rng))


# ----------------------------------------------------------------- reader ----
class Registry:
    """fid -> seeds written to it, from the writers' registry file."""

    def __init__(self, path):
        self.path, self.seeds, self.off = path, {}, 0
        self.recent = []
        self.lock = threading.RLock()

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
                fid, seed = line.rsplit(" ", 1)
                self.seeds.setdefault(fid, set()).add(int(seed))
                self.recent.append(fid)
            del self.recent[:-16]

    def get(self, fid):
        with self.lock:
            return sorted(self.seeds.get(fid, ()))

    def check(self, fid, data, zeros_from=None):
        err = kvgen.check_bytes(fid, data, self.get(fid), zeros_from)
        if err:
            self.reload()
            err = kvgen.check_bytes(fid, data, self.get(fid), zeros_from)
        return err


def uid_of(name):
    for p in ("c-", ".tmp-"):
        if name.startswith(p):
            return name[len(p):]
    return None


def read_file(path, rng):
    """open, read to the end, close; an error says which of them failed."""
    fd = os.open(path, os.O_RDONLY)
    parts = []
    try:
        while True:
            b = os.read(fd, rng.choice([4096, 65536, 1 << 20]))
            if not b:
                break
            parts.append(b)
    except OSError as e:
        os.close(fd)
        raise OSError(e.errno, "read() after %d bytes: %s" % (sum(map(len, parts)), e.strerror), path)
    try:
        os.close(fd)
    except OSError as e:
        raise OSError(e.errno, "close() after reading %d bytes: %s" % (sum(map(len, parts)), e.strerror), path)
    return b"".join(parts)


def reader_thread(a, k, t_end, out, lock, reg):
    rng = random.Random("%d/%d/reader%d" % (a.seed, a.it, k))
    nsdir = os.path.join(a.mnt, NS)
    while now() < t_end:
        try:
            if rng.random() < 0.5:
                # a file being written now, most likely: its closes here
                # publish what the daemon holds of it in the middle of writes
                reg.reload()
                if not reg.recent:
                    continue
                with reg.lock:
                    uid, f = rng.choice(reg.recent[-a.writers:]).split("/")
                name = rng.choice(["c-", ".tmp-"]) + uid
            else:
                names = os.listdir(nsdir)
                if not names:
                    time.sleep(0.01)
                    continue
                name = rng.choice(names)
                files = os.listdir(os.path.join(nsdir, name))
                if not files:
                    continue
                f = rng.choice(files)
            t0 = now()
            data = read_file(os.path.join(nsdir, name, f), rng)
            t1 = now()
        except OSError as e:
            if e.errno in FATAL:
                return
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            with lock:
                out.put({"reader": k, "err": e.errno, "t": now(), "msg": str(e)})
            return
        uid = uid_of(name)
        with lock:
            err = reg.check("%s/%s" % (uid, f), data) if uid else "unexpected name"
            if err:
                try:
                    again = read_file(os.path.join(nsdir, name, f), rng)
                    again = "read again: %d bytes, %s" % (
                        len(again), reg.check("%s/%s" % (uid, f), again) or "fine")
                except OSError as e:
                    again = "read again: %s" % e
                # the first offset from which zeros would explain it all
                lo, hi = 0, len(data)
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if reg.check("%s/%s" % (uid, f), data, mid) is None:
                        lo = mid
                    else:
                        hi = mid - 1
                zf = lo if reg.check("%s/%s" % (uid, f), data, lo) is None else None
                out.put({"reader": k, "garbage": "%s/%s: %s; %s" % (name, f, err, again),
                         "t": t1, "t0": t0, "uid": uid, "f": f, "zeros_from": zf})
            else:
                out.put({"reader": k, "reads": 1}, sync=False)


def closer_thread(a, k, t_end, out, lock, reg):
    """open() and close() the files being written, back to back: each close
    publishes what the daemon holds of the file then (docs/format.md), so a
    kill finds files published in the middle of their writes."""
    rng = random.Random("%d/%d/closer%d" % (a.seed, a.it, k))
    nsdir = os.path.join(a.mnt, NS)
    while now() < t_end:
        reg.reload()
        with reg.lock:
            recent = reg.recent[-a.writers:]
        if not recent:
            time.sleep(0.01)
            continue
        uid, f = rng.choice(recent).split("/")
        for name in ("c-" + uid, ".tmp-" + uid):
            try:
                fd = os.open(os.path.join(nsdir, name, f), os.O_RDONLY)
            except OSError as e:
                if e.errno in FATAL:
                    return
                continue
            try:
                os.close(fd)
            except OSError as e:
                if e.errno in FATAL:
                    return
                with lock:
                    out.put({"reader": k, "err": e.errno, "t": now(),
                             "msg": "close() of a file opened only to read it: %s" % e})


def reader_guard(a, k, t_end, out, lock, reg, fn=reader_thread):
    try:
        fn(a, k, t_end, out, lock, reg)
    except Exception:
        import traceback
        with lock:
            out.put({"reader": k, "err": -1, "t": 0, "msg": traceback.format_exc()})


def reader_proc(a, t_end, nthreads, nclosers=1):
    out = Journal(os.path.join(a.work, "it%d-readers.jl" % a.it))
    lock = threading.Lock()
    reg = Registry(os.path.join(a.work, "registry"))
    ts = [threading.Thread(target=reader_guard, args=(a, k, t_end, out, lock, reg))
          for k in range(nthreads)]
    ts += [threading.Thread(target=reader_guard, args=(a, nthreads + k, t_end, out, lock, reg, closer_thread))
           for k in range(nclosers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# ------------------------------------------------------------------ model ----
# A file's candidates: ["v", segs] (exactly this), ["none"] (absent),
# ["pat", base, seed, a, L, final] (a state of an unfinished write,
# kvgen.match_pattern).  A context: {"names": [...], "maybe": bool (may be
# absent), "files": {f: [cand, ...]}}.

# --strict-publish: a write in flight at the kill may leave only the old or
# the new content, not the prefix a close() of another descriptor published
STRICT = False


def cands_after(cands, rec, done):
    """The candidates of a file after write/truncate/unlink step rec, which
    completed (done) or may have been applied partly or not at all."""
    out = [] if done else [c for c in cands]
    for c in cands:
        if c[0] == "pat":
            raise ValueError("step %d on a file of unknown state" % rec["n"])
        base = c[1] if c[0] == "v" else None
        op = rec["op"]
        if op == "unlink":
            out.append(["none"])
        elif op == "truncate":
            out.append(["v", kvgen.clip(base, rec["size"])])
        elif op == "write":
            b = [] if rec["mode"] in ("create", "trunc") or base is None else base
            if done:
                new = kvgen.overlay(b, rec["a"], rec["a"] + rec["L"], rec["seed"])
                if rec["final"] is not None:
                    new = kvgen.clip(new, rec["final"])
                out.append(["v", new])
            elif STRICT:
                # docs/reliability.md: the last version the writer published,
                # or (its close having committed) the new one
                new = kvgen.overlay(b, rec["a"], rec["a"] + rec["L"], rec["seed"])
                out.append(["v", new if rec["final"] is None else kvgen.clip(new, rec["final"])])
                if rec["mode"] == "create":
                    out.append(["v", []])
            else:
                out.append(["pat", b, rec["seed"], rec["a"], rec["L"], rec["final"]])
    uniq = []
    for c in out:
        if c not in uniq:
            uniq.append(c)
    return uniq


def replay(model, steps, outcome, t_kill, evict, problems, who):
    """Apply one writer's journal to the model."""
    ctxs = model["ctx"]
    for rec in steps:
        o = outcome.get(rec["n"])
        done = bool(o and o.get("ok"))
        if o and "err" in o and o["t"] < t_kill and not (
                evict and o["err"] in (errno.ENOENT, errno.ENOSPC)):
            problems.append("%s step %d %s failed with %s before the kill (%s)" % (
                who, rec["n"], describe(rec), errno.errorcode.get(o["err"], o["err"]),
                o.get("msg")))
        if done and o["t"] > t_kill + 0.5:
            problems.append("%s step %d %s returned success %.2f s after the daemon was killed" % (
                who, rec["n"], describe(rec), o["t"] - t_kill))
        uid, op = rec["uid"], rec["op"]
        if op == "mkdir":
            ctxs[uid] = {"names": [rec["name"]], "maybe": not done, "files": {}}
            continue
        c = ctxs[uid]
        if op == "rename":
            c["names"] = [rec["to"]] if done else c["names"] + [rec["to"]]
        elif op == "rmdir":
            if done:
                del ctxs[uid]
            else:
                c["maybe"] = True
        else:
            f = rec["f"]
            c["files"][f] = cands_after(c["files"].get(f, [["none"]]), rec, done)
            if c["files"][f] == [["none"]]:
                del c["files"][f]


def describe(rec):
    d = dict(rec)
    d.pop("n", None)
    d.pop("t0", None)
    return json.dumps(d, separators=(",", ":"))


def match(fid, data, cands):
    """The segments of data if it is one of cands, else None."""
    for c in cands:
        if c[0] == "v" and kvgen.content(fid, c[1]) == data:
            return c[1]
    for c in cands:
        if c[0] == "pat":
            m = kvgen.match_pattern(fid, data, c[1], c[2], c[3], c[4], c[5])
            if m is not None:
                return m
    return None


def explain(fid, data, cands):
    seeds = set()
    for c in cands:
        if c[0] == "v":
            seeds |= {s for _, _, s in c[1]}
        elif c[0] == "pat":
            seeds |= {s for _, _, s in c[1]} | {c[2]}
    g = kvgen.check_bytes(fid, data, seeds)
    want = []
    for c in cands:
        if c[0] == "v":
            want.append("%d bytes %s" % (kvgen.size_of(c[1]), c[1]))
        elif c[0] == "none":
            want.append("absent")
        else:
            want.append("unfinished write of seed %d over [%d,+%d) on %s%s" % (
                c[2], c[3], c[4], c[1], "" if c[5] is None else ", then truncated to %d" % c[5]))
    return "%d bytes that are none of: %s%s" % (
        len(data), "; ".join(want), "; " + g if g else " (each byte is from some write)")


def verify(mnt, model, evict, problems):
    """Check the tree under mnt against the model; return the model of what
    is there (every candidate set resolved to the state found)."""
    nsdir = os.path.join(mnt, NS)
    top = sorted(os.listdir(mnt))
    if top not in ([], [NS]):
        problems.append("unexpected entries at the top of the mount: %s" % top)
    present = set(os.listdir(nsdir)) if NS in top else set()
    claimed = set()
    out = {"ctx": {}}
    nfiles = 0
    for uid in sorted(model["ctx"]):
        c = model["ctx"][uid]
        here = [n for n in c["names"] if n in present]
        claimed |= set(here)
        if len(here) > 1:
            problems.append("context %s is there under %d names: %s" % (uid, len(here), here))
            continue
        if not here:
            must = [f for f, cs in c["files"].items() if ["none"] not in cs]
            if not c["maybe"] and not evict:
                problems.append("context %s/%s is missing (files %s)" % (NS, c["names"][-1], must))
            continue
        name = here[0]
        d = os.path.join(nsdir, name)
        disk = set(os.listdir(d))
        files = {}
        for f in sorted(set(c["files"]) | disk):
            cands = c["files"].get(f, [["none"]])
            fid = uid + "/" + f
            if f not in disk:
                if ["none"] not in cands:
                    problems.append("%s/%s/%s is missing: %s" % (NS, name, f, explain_missing(cands)))
                continue
            try:
                data = read_whole(os.path.join(d, f))
            except OSError as e:
                problems.append("%s/%s/%s: read failed: %s" % (NS, name, f, e))
                continue
            nfiles += 1
            segs = match(fid, data, cands)
            if segs is None:
                where = "not in the journal: " if f not in c["files"] else ""
                problems.append("%s/%s/%s holds %s%s" % (NS, name, f, where, explain(fid, data, cands)))
                # reported once: the next iterations go on without it
                os.unlink(os.path.join(d, f))
                continue
            files[f] = segs
        out["ctx"][uid] = {"name": name, "files": files}
    for n in sorted(present - claimed):
        problems.append("unexpected directory %s/%s (deleted before the kill, or never made): %s" % (
            NS, n, sorted(os.listdir(os.path.join(nsdir, n)))))
        shutil.rmtree(os.path.join(nsdir, n))
    return out, nfiles


def explain_missing(cands):
    return "; ".join("must be %d bytes" % kvgen.size_of(c[1]) if c[0] == "v" else
                     "or an unfinished write" for c in cands if c[0] != "none")


def read_whole(path):
    with open(path, "rb", buffering=0) as f:
        parts = []
        while True:
            b = f.read(1 << 20)
            if not b:
                return b"".join(parts)
            parts.append(b)


def model_load(work):
    p = os.path.join(work, "model.json")
    if not os.path.exists(p):
        return {"ctx": {}}
    with open(p) as f:
        m = json.load(f)
    # saved as resolved: one name, exact files
    return {"ctx": {u: {"names": [c["name"]], "maybe": False,
                        "files": {f: [["v", [tuple(s) for s in segs]]] for f, segs in c["files"].items()}}
                    for u, c in m["ctx"].items()}}


def model_save(work, resolved):
    p = os.path.join(work, "model.json")
    with open(p + ".tmp", "w") as f:
        json.dump(resolved, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(p + ".tmp", p)


# ----------------------------------------------------------------- daemon ----
class Daemon:
    def __init__(self, a, opts, tag):
        self.a, self.opts = a, opts
        self.log = os.path.join(a.work, "kvfs-%s.log" % tag)
        with open(self.log, "ab") as lf:
            lf.write(("+ kvfs -f -o %s %s %s\n" % (opts, a.store, a.mnt)).encode())
            self.p = subprocess.Popen([a.kvfs, "-f", "-o", opts, a.store, a.mnt],
                                      stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
        t0 = now()
        while not mounted(a.mnt):
            if self.p.poll() is not None:
                raise Failure("kvfs -o %s exited with %d before mounting; log:\n%s" % (
                    opts, self.p.returncode, tail(self.log)))
            if now() - t0 > 30:
                raise Failure("kvfs -o %s did not mount within 30 s; log:\n%s" % (opts, tail(self.log)))
            time.sleep(0.02)
        self.t_mount = now() - t0
        self.conn = conn_of(a.mnt)

    def kill(self):
        """SIGKILL; the daemon should be gone within a few seconds. If it is
        not (a thread stuck in the kernel keeps /dev/fuse open, and so the
        connection, and every process waiting on it), describe its threads,
        abort the connection through fusectl and return the description."""
        os.kill(self.p.pid, signal.SIGKILL)
        try:
            self.p.wait(timeout=10)
            return None
        except subprocess.TimeoutExpired:
            pass
        stuck = threads_of(self.p.pid)
        abort_connection(self.conn)
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise Failure("kvfs (pid %d) survives SIGKILL and a connection abort:\n%s" % (self.p.pid, stuck))
        return stuck

    def umount(self):
        for _ in range(100):
            r = subprocess.run(["fusermount3", "-u", self.a.mnt], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise Failure("cannot unmount %s: %s" % (self.a.mnt, r.stderr.strip()))
        try:
            rc = self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("kvfs still running 30 s after unmount; log:\n%s" % tail(self.log))
        if rc != 0:
            raise Failure("kvfs exited with %d after a clean unmount; log:\n%s" % (rc, tail(self.log)))


class Failure(Exception):
    pass


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def log_problems(path):
    """Lines of a daemon log that must never appear."""
    bad = []
    with open(path, errors="replace") as f:
        for line in f:
            if ("damaged record" in line or "AddressSanitizer" in line or "runtime error" in line
                    or "LeakSanitizer" in line):
                bad.append(line.rstrip())
    return bad


# ------------------------------------------------------------------- loop ----
def fork(fn):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except SystemExit as e:
            code = e.code or 0
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 2
        os._exit(code)
    return pid


def wait_children(pids, limit):
    t0, left, codes = now(), set(pids), {}
    while left and now() - t0 < limit:
        for p in list(left):
            r, st = os.waitpid(p, os.WNOHANG)
            if r:
                codes[p] = os.waitstatus_to_exitcode(st)
                left.discard(p)
        time.sleep(0.02)
    return left, codes


def assign(model, writers):
    per = [dict() for _ in range(writers)]
    for i, uid in enumerate(sorted(model["ctx"])):
        c = model["ctx"][uid]
        per[i % writers][uid] = {"name": c["names"][0],
                                 "files": {f: cs[0][1] for f, cs in c["files"].items()}}
    return per


def evict_trigger(mnt, target, box):
    try:
        with open(os.path.join(mnt, ".kvfs", "evict"), "w") as f:
            f.write("%d\n" % target)
        box["t1"] = now()
    except OSError as e:
        box["err"] = e


def stored_of(mnt):
    with open(os.path.join(mnt, ".kvfs", "stats")) as f:
        for line in f:
            if line.startswith("kvfs_stored_bytes "):
                return int(float(line.split()[1]))
    return 0


def kvfsctl_info(a):
    r = subprocess.run([a.kvfsctl, "info", a.store], capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure("kvfsctl info %s failed (%d): %s" % (a.store, r.returncode, r.stderr.strip()))
    info = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(": ")
        info[k] = v
    return info


def truncated_meanwhile(a, it, r):
    """True if all the garbage a reader found is zeros at offsets that a
    truncate of the file, running while the file was read, had just cut off.
    The kernel (fs/fuse) zero-fills pages that a read racing a truncate gets
    short from the daemon and, while the truncate is in flight (its
    FUSE_I_SIZE_UNSTABLE), keeps the old size, so the reader sees zeros up
    to the old size; kvfs cannot prevent that."""
    if r.get("zeros_from") is None:
        return False
    for w in range(a.writers):
        steps, outcome = read_journal(os.path.join(a.work, "it%d-w%d.jl" % (it, w)))
        for s in steps:
            if s["uid"] != r["uid"] or s.get("f") != r["f"]:
                continue
            o = outcome.get(s["n"], {})
            end = o.get("t", float("inf"))
            if s["t0"] > r["t"] or end < r["t0"]:
                continue
            if s["op"] == "truncate" and r["zeros_from"] >= s["size"]:
                return True
            if s["op"] == "write" and s["mode"] == "trunc":
                return True
            if s["op"] == "write" and s["final"] is not None and r["zeros_from"] >= s["final"]:
                return True
    return False


def history(a, it, r):
    """The writer steps on the file a reader found garbage in, around its read."""
    out = []
    for w in range(a.writers):
        steps, outcome = read_journal(os.path.join(a.work, "it%d-w%d.jl" % (it, w)))
        for s in steps:
            if s["uid"] == r["uid"] and s.get("f") in (None, r["f"]):
                o = outcome.get(s["n"], {})
                out.append("\n        %+.3f..%s s  %s -> %s" % (
                    s["t0"] - r["t0"], "%+.3f" % (o["t"] - r["t0"]) if o else "?", describe(s),
                    "ok" if o.get("ok") else o.get("msg", "no outcome")))
    return "; the read ran %+.3f..%+.3f s; writer steps on it (times from the read's start):%s" % (
        0, r["t"] - r["t0"], "".join(out))


def iteration(a, it, rng, problems, stats):
    codec = rng.choice(["lz4", "zstd", "zstd:3", "none"])
    shuffle = rng.choice(["auto", "off", "2"])
    evict = it % 4 == 3
    big = it % 5 == 4 and not evict
    base = "chunk=64K,codec=%s,shuffle=%s,workers=2" % (codec, shuffle)
    opts = base
    if evict:
        opts += ",capacity=%dK" % rng.choice([1536, 3072, 4096])
    a.it = it
    model = model_load(a.work)
    d = Daemon(a, opts, "it%d" % it)
    os.makedirs(os.path.join(a.mnt, NS), exist_ok=True)
    delay = rng.uniform(0.2, a.max_delay)
    t_end = now() + 60
    pids = []
    for w, ctxs in enumerate(assign(model, a.writers)):
        pids.append(fork(lambda w=w, ctxs=ctxs: Writer(a, w, it, ctxs, evict, t_end, big).run()))
    pids.append(fork(lambda: reader_proc(a, t_end, a.readers, 3 if big else 1)))
    box = {}
    how = "after %.2f s" % delay
    if evict and rng.random() < 0.7:
        time.sleep(delay)
        try:
            target = stored_of(a.mnt) // 2
        except OSError:
            target = 0
        th = threading.Thread(target=evict_trigger, args=(a.mnt, target, box), daemon=True)
        box["t0"] = now()
        th.start()
        time.sleep(rng.uniform(0, 0.02))
        how = "%.1f ms into a manual eviction to %d bytes" % ((now() - box["t0"]) * 1e3, target)
    else:
        time.sleep(delay)
    t_kill = now()
    alive = d.p.poll() is None
    stuck = d.kill()
    if not alive:
        problems.append("it%d: the daemon died before the kill (status %s); log:\n%s" % (
            it, d.p.returncode, tail(d.log)))
    if stuck and a.allow_stuck_kill:
        stats["stuck_kills"] += 1
        print("      SIGKILL did not end kvfs within 10 s (allowed): %s" % stuck, flush=True)
    elif stuck:
        problems.append("it%d: SIGKILL (%s) did not end kvfs within 10 s: a thread stuck in the kernel "
                        "kept the FUSE connection open and every process using the mount waiting, until "
                        "the connection was aborted through /sys/fs/fuse/connections; the threads were:\n"
                        "        %s" % (it, how, stuck))
    hung, codes = wait_children(pids, 30)
    if hung:
        for p in hung:
            problems.append("it%d: worker process %d still running 30 s after the daemon was killed: %s" % (
                it, p, threads_of(p)))
        abort_connection(d.conn)
        hung, more = wait_children(hung, 10)
        codes.update(more)
        for p in hung:
            os.kill(p, signal.SIGKILL)
            os.waitpid(p, 0)
    for p, c in codes.items():
        if c != 0:
            problems.append("it%d: worker process %d exited with %d" % (it, p, c))
    r = subprocess.run(["fusermount3", "-uz", a.mnt], capture_output=True, text=True)
    if mounted(a.mnt):
        raise Failure("it%d: cannot detach the dead mount: %s" % (it, r.stderr.strip()))
    leftovers = os.listdir(a.mnt)
    if leftovers:
        raise Failure("it%d: files appeared under the bare mountpoint: %s" % (it, leftovers))

    # restart on the same store, without a cap, and check everything
    n0 = len(problems)
    d2 = Daemon(a, base, "it%d-restart" % it)
    nw = 0
    for w in range(a.writers):
        steps, outcome = read_journal(os.path.join(a.work, "it%d-w%d.jl" % (it, w)))
        nw += len(steps)
        replay(model, steps, outcome, t_kill, evict, problems, "it%d writer %d" % (it, w))
    reads = 0
    rj = os.path.join(a.work, "it%d-readers.jl" % it)
    if os.path.exists(rj):
        with open(rj) as f:
            for line in f:
                r = json.loads(line)
                if "garbage" in r and truncated_meanwhile(a, it, r):
                    stats["trunc_zeros"] += 1
                elif "garbage" in r:
                    problems.append("it%d reader %d read garbage %.2f s %s the kill: %s%s" % (
                        it, r["reader"], abs(t_kill - r["t"]), "before" if r["t"] < t_kill else "after",
                        r["garbage"], history(a, it, r)))
                elif "err" in r and r["t"] < t_kill:
                    problems.append("it%d reader %d, %.2f s before the kill: %s" % (
                        it, r["reader"], t_kill - r["t"], r["msg"]))
                reads += r.get("reads", 0)
    resolved, nfiles = verify(a.mnt, model, evict, problems)
    live = stored_of(a.mnt)
    d2.umount()
    model_save(a.work, resolved)
    for lg in (d.log, d2.log):
        for line in log_problems(lg):
            problems.append("it%d: daemon log %s: %s" % (it, os.path.basename(lg), line))
    info = kvfsctl_info(a)
    du = seg_usage(a.store)
    stats["kills"] += 1
    stats["steps"] += nw
    stats["reads"] += reads
    stored = int(info.get("stored_bytes", 0))
    stats["du"].append((du, stored))
    slack = slack_of(a.store, int(info.get("files", 0)))
    if a.expect_reclaim and du > stored + slack:
        problems.append("it%d: after the restart the segments use %d bytes for %d bytes of live records "
                        "(+ slack %d): the space the crash left was not reclaimed" % (it, du, stored, slack))
    print("it%-3d %-34s%s killed %s; %d writer steps, %d checked reads; restart in %.2f s; "
          "%d contexts, %d files verified; stored %d, segments use %d (%+d)%s" % (
              it, opts, " (large files in 4K writes)" if big else "", how, nw, reads, d2.t_mount, len(resolved["ctx"]), nfiles,
              live, du, du - live, "" if len(problems) == n0 else "  <-- %d problem(s)" % (len(problems) - n0)),
          flush=True)
    if box.get("err"):
        print("      (manual eviction ended with %s)" % box["err"], flush=True)


def cmd_loop(a):
    os.makedirs(a.work, exist_ok=True)
    rng = random.Random(a.seed)
    problems, stats = [], {"kills": 0, "steps": 0, "reads": 0, "du": [], "trunc_zeros": 0, "stuck_kills": 0}
    t0 = now()
    it = 0
    print("crash: seed %d, %s" % (a.seed, "%d iterations" % a.iters if a.iters else
                                  "iterations for %g s (at least %d)" % (a.seconds, a.min_iters)), flush=True)
    try:
        while True:
            if a.iters and it >= a.iters:
                break
            if not a.iters and it >= a.min_iters and now() - t0 >= a.seconds:
                break
            iteration(a, it, rng, problems, stats)
            it += 1
            if len(problems) > 40:
                break
    except Failure as e:
        problems.append(str(e))
    print("crash: %d iterations, %d kills, %d writer steps, %d checked reads in %.0f s "
          "(%d read(s) saw zeros where a concurrent truncate cut the file: allowed)" % (
              it, stats["kills"], stats["steps"], stats["reads"], now() - t0, stats["trunc_zeros"]),
          flush=True)
    if stats["stuck_kills"]:
        print("crash: %d kill(s) left kvfs stuck until its connection was aborted" % stats["stuck_kills"], flush=True)
    if stats["du"]:
        extra = [du - live for du, live in stats["du"]]
        print("crash: segments beyond the live records after each restart (no gc): first %d, max %d, "
              "last %d bytes%s" % (extra[0], max(extra), extra[-1],
                                   "" if a.expect_reclaim else " (not checked: CRASH_EXPECT_RECLAIM=0)"), flush=True)
    with open(os.path.join(a.work, "summary.json"), "w") as f:
        json.dump({"iterations": it, **stats}, f)
    for p in problems:
        print("VIOLATION: " + p, flush=True)
    return 1 if problems else 0


def cmd_verify(a):
    problems = []
    _, n = verify(a.mnt, model_load(a.work), False, problems)
    for p in problems:
        print("VIOLATION: " + p)
    print("verify: %d files checked, %d problem(s)" % (n, len(problems)))
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["loop", "verify"])
    ap.add_argument("--kvfs")
    ap.add_argument("--kvfsctl")
    ap.add_argument("--store")
    ap.add_argument("--mnt", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--min-iters", type=int, default=15)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--max-delay", type=float, default=2.5)
    ap.add_argument("--expect-reclaim", action="store_true",
                    help="fail when a restart leaves more than the live records in the segments")
    ap.add_argument("--allow-stuck-kill", action="store_true",
                    help="only count kills after which kvfs had to be freed by aborting its connection")
    ap.add_argument("--strict-publish", action="store_true",
                    help="a write in flight at the kill leaves the old or the new content, no prefix")
    a = ap.parse_args()
    global STRICT
    STRICT = a.strict_publish
    a.mnt = os.path.realpath(a.mnt)
    if a.store:
        a.store = os.path.realpath(a.store)
    return cmd_loop(a) if a.cmd == "loop" else cmd_verify(a)


if __name__ == "__main__":
    sys.exit(main())
