# SPDX-License-Identifier: Apache-2.0
"""Files on a kvfs mount from plain Python: bytes and numpy arrays written
the way engines publish KV (under a temporary name, then renamed into
place, so a reader never sees half a file), read back, and the mount's
counters. Nothing here needs a GPU or torch; arrays need numpy."""

import os
import tempfile
from typing import Dict, Union

PathLike = Union[str, "os.PathLike[str]"]


def _publish(path: PathLike, write, durable: bool) -> None:
    """Write a new file next to path through write(fileobj), then rename it
    onto path. durable: fsync the file before the rename."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_bytes(path: PathLike, data: bytes, *, durable: bool = False) -> None:
    """Publish data as the file path: written under a temporary name in the
    same directory and renamed onto path, so readers see the old file or
    the whole new one. durable: on disk (fsync) before the rename."""
    _publish(path, lambda f: f.write(memoryview(data)), durable)


def read_bytes(path: PathLike) -> bytes:
    """The whole file."""
    with open(path, "rb") as f:
        return f.read()


def _numpy():
    try:
        import numpy
    except ImportError:
        raise ImportError("kvfs.save_array and kvfs.load_array need numpy "
                          "(pip install numpy, or apt install python3-numpy)") from None
    return numpy


def save_array(path: PathLike, array, *, durable: bool = False) -> None:
    """Publish a numpy array (any dtype numpy can describe) as path, in
    numpy's .npy format, the way write_bytes publishes bytes."""
    np = _numpy()
    a = np.asanyarray(array)
    if a.dtype.hasobject:
        raise TypeError("kvfs.save_array: arrays of Python objects cannot be stored")
    _publish(path, lambda f: np.lib.format.write_array(f, a, allow_pickle=False), durable)


def load_array(path: PathLike, *, mmap: bool = False):
    """The numpy array saved as path (save_array, or numpy.save). mmap:
    map the file instead of reading it (pages come in as they are used)."""
    np = _numpy()
    return np.load(os.fspath(path), mmap_mode="r" if mmap else None, allow_pickle=False)


def stats(mount: PathLike) -> Dict[str, float]:
    """The counters of the mount (MOUNT/.kvfs/stats, Prometheus text) as
    {name: value}; a counter with labels is keyed with them, as in
    'kvfs_evictions_total{reason="lru"}'."""
    out = {}
    with open(os.path.join(os.fspath(mount), ".kvfs", "stats")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
