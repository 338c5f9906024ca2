# SPDX-License-Identifier: Apache-2.0
"""Process and mount helpers shared by crash.py and stress.py (stdlib only)."""

import os
import subprocess


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


def conn_of(mnt):
    """The fusectl connection number of the FUSE mount on mnt."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            x = line.split()
            if x[4] == mnt:
                return int(x[2].split(":")[1])
    return None


def abort_connection(conn):
    d = "/sys/fs/fuse/connections"
    if not os.path.exists(os.path.join(d, str(conn))):
        subprocess.run(["mount", "-t", "fusectl", "none", d], capture_output=True)
    try:
        with open(os.path.join(d, str(conn), "abort"), "w") as f:
            f.write("1")
    except OSError as e:
        print("cannot abort FUSE connection %s: %s" % (conn, e), flush=True)


def threads_of(pid):
    """State, wait channel and kernel stack of each thread of pid."""
    out = []
    for t in sorted(os.listdir("/proc/%d/task" % pid)):
        base = "/proc/%d/task/%s/" % (pid, t)
        try:
            with open(base + "stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(base + "wchan") as f:
                wchan = f.read()
            try:
                with open(base + "stack") as f:
                    stack = f.read().strip().replace("\n", " <- ")
            except OSError:
                stack = "?"
        except OSError:
            continue
        out.append("thread %s state %s in %s: %s" % (t, state, wchan, stack))
    return "\n        ".join(out)
