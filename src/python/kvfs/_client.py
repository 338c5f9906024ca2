# SPDX-License-Identifier: Apache-2.0
"""kvfs._client: the engine side of the kvfs GPU fast path, in pure Python
(also importable under its old name, kvfs_client).

The kvfs daemon copies file bytes straight to or from an engine's GPU memory
when asked with the ioctls of include/kvfs/ioctl.h (ABI version 1). This
module speaks them with fcntl.ioctl and struct, and does what libkvfs
(include/kvfs/kvfs.h) does in C:

    import kvfs as kv
    kv.query("/mnt/kv")                                   # works without torch
    kv.save_tensor(k, "/mnt/kv/llama/3f2a9c/layer_00.kv")
    kv.load_tensor("/mnt/kv/llama/3f2a9c/layer_00.kv", k_out)
    kv.save_tensors(path, [(k, 0), (v, k.nbytes)])        # several tensors, one file
    kv.load_tensors(path, [(k_out, 0), (v_out, k.nbytes)])
    t = kv.load_new(path, (256, 8, 128), torch.float16, "cuda:0")

A path opens the file for this one call (a save creates or truncates it); an
open fd is used as it is, so a save can fill part of a larger file. Tensors
must be contiguous and on a CUDA (or ROCm) device. Before each call the
current stream of every device involved is synchronised, because the daemon
copies on its own stream in its own process; work on other streams is the
caller's to finish. When a call returns, its copies are complete.

Finding the allocation. The daemon needs the IPC handle of the BASE of the
allocation a tensor lies in, that allocation's device and the tensor's
offset in it. This module asks the GPU runtime itself, through ctypes: the
CUDA driver (libcuda.so.1: cuMemGetAddressRange, cuIpcGetMemHandle, ...) or
the HIP runtime (libamdhip64.so), picked by the backend the daemon reports.
For PyTorch's caching allocator the allocation is the segment that holds the
tensor, the same one torch's own sharing exports. It does not use
``untyped_storage()._share_cuda_()``: that call also moves the storage behind
an inter-process reference count that only a consumer process releases, so
a storage shared and then freed without one stays allocated for the life of
the process. Handles are cached per allocation, keyed by the runtime's
buffer id, which a new allocation at a freed one's address does not share.

Memory that has no legacy IPC handle is refused with KVFS_E_LIB_EXPORT:
PyTorch's expandable segments (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
and its cudaMallocAsync backend among them.

Failures raise KvfsError, an OSError whose errno is the daemon's (or
EINVAL/EFAULT/ENODEV for what this module refuses itself) and whose
``detail_name`` is the KVFS_E_* name.
"""

import collections
import ctypes
import errno
import fcntl
import os
import struct
import threading

ABI_VERSION = 1
GPU_NONE, GPU_HIP, GPU_CUDA = 0, 1, 2
MAX_DEVICES = 16
MAX_SEGS = 160
IPC_HANDLE_SIZE = 64

# struct kvfs_query (320 bytes) and struct kvfs_gpu_io (128 + 24 * MAX_SEGS),
# little-endian as the ABI fixes them; offsets in the comments.
_QUERY = struct.Struct(
    "<I"    # 0   abi_version
    "I"     # 4   struct_size
    "I"     # 8   kvfs_version
    "I"     # 12  backend
    "I"     # 16  ndevices
    "I"     # 20  max_segs
    "Q"     # 24  chunk_size
    "32s"   # 32  backend_name
    "256s"  # 64  device_uuid[16][16]
)
_IO_HDR = struct.Struct(
    "<I"    # 0   abi_version
    "I"     # 4   struct_size
    "I"     # 8   vendor
    "I"     # 12  flags
    "64s"   # 16  handle
    "16s"   # 80  device_uuid
    "Q"     # 96  alloc_size
    "I"     # 104 nseg
    "I"     # 108 detail
    "Q"     # 112 bytes_done
    "i"     # 120 error
    "I"     # 124 error_seg
)
_IoHdr = collections.namedtuple(
    "_IoHdr", "abi_version struct_size vendor flags handle device_uuid alloc_size nseg detail "
    "bytes_done error error_seg")
_SEG = struct.Struct("<QQQ")  # file_off, dev_off, len
_IO_SIZE = _IO_HDR.size + MAX_SEGS * _SEG.size
assert _QUERY.size == 320 and _IO_SIZE == 128 + 24 * MAX_SEGS


def _iowr(nr, size):
    # Linux's _IOWR(type, nr, size) on the common layout (x86, arm, riscv):
    # dir (read|write = 3) << 30 | size << 16 | type << 8 | nr.
    return (3 << 30) | (size << 16) | (ord("K") << 8) | nr


IOC_QUERY = _iowr(1, _QUERY.size)
IOC_GPU_READ = _iowr(2, _IO_SIZE)
IOC_GPU_WRITE = _iowr(3, _IO_SIZE)

# enum kvfs_error_detail, then libkvfs's own details (kvfs.h).
DETAILS = {
    0: ("KVFS_E_OK", "no detail"),
    1: ("KVFS_E_VERSION", "the daemon speaks another ioctl ABI version"),
    2: ("KVFS_E_SIZE", "struct size mismatch between client and daemon"),
    3: ("KVFS_E_ARG", "flags, segment count or vendor out of range"),
    4: ("KVFS_E_FILE_RANGE", "range beyond the end of the file, or offset overflow"),
    5: ("KVFS_E_DEV_RANGE", "range beyond the GPU allocation"),
    6: ("KVFS_E_NO_BACKEND", "the daemon runs no GPU backend"),
    7: ("KVFS_E_VENDOR", "the memory belongs to another GPU vendor than the daemon's"),
    8: ("KVFS_E_DEVICE", "the daemon sees no device with this UUID"),
    9: ("KVFS_E_HANDLE", "the daemon could not open the IPC memory handle"),
    10: ("KVFS_E_ACCESS", "the file is not open for this direction"),
    11: ("KVFS_E_COPY", "the GPU copy failed in the daemon"),
    12: ("KVFS_E_IO", "reading or writing the file failed"),
    100: ("KVFS_E_LIB_RUNTIME", "the GPU runtime library could not be loaded"),
    101: ("KVFS_E_LIB_POINTER", "not device memory the GPU runtime knows"),
    102: ("KVFS_E_LIB_EXPORT", "the allocation cannot be exported as an IPC handle"),
}
E_OK, E_ARG, E_DEV_RANGE, E_NO_BACKEND, E_VENDOR = 0, 3, 5, 6, 7
E_LIB_RUNTIME, E_LIB_POINTER, E_LIB_EXPORT = 100, 101, 102

_EXPORT_HINT = ("not cudaMalloc/hipMalloc memory (PyTorch: set PYTORCH_CUDA_ALLOC_CONF="
                "expandable_segments:False and do not use the cudaMallocAsync backend)")


def detail_name(detail):
    return DETAILS.get(detail, ("KVFS_E_%d" % detail, ""))[0]


class KvfsError(OSError):
    """An OSError with the kvfs detail: ``detail`` (int), ``detail_name``
    and ``index``, the failed entry of the request (or None)."""

    def __init__(self, err, message, detail=E_OK, index=None):
        super().__init__(err, message)
        self.detail = detail
        self.detail_name = detail_name(detail)
        self.index = index


class _opened:
    """An fd for path_or_fd: a path is opened with flags and closed after."""

    def __init__(self, path_or_fd, flags):
        self.own = not isinstance(path_or_fd, int)
        self.fd = os.open(path_or_fd, flags, 0o644) if self.own else path_or_fd

    def __enter__(self):
        return self.fd

    def __exit__(self, *exc):
        if self.own:
            os.close(self.fd)


Query = collections.namedtuple(
    "Query", "abi_version kvfs_version backend backend_name ndevices max_segs chunk_size device_uuids")


def query(path_or_fd):
    """What the daemon is and can do (KVFS_IOC_QUERY); a directory of the
    mount will do. kvfs_version is (major, minor, patch), device_uuids a
    list of 16-byte strings."""
    buf = bytearray(_QUERY.size)
    _QUERY.pack_into(buf, 0, ABI_VERSION, _QUERY.size, 0, 0, 0, 0, 0, b"", b"")
    with _opened(path_or_fd, os.O_RDONLY) as fd:
        try:
            fcntl.ioctl(fd, IOC_QUERY, buf, True)
        except OSError as e:
            hint = " (not a file on a kvfs mount)" if e.errno == errno.ENOTTY else ""
            raise KvfsError(e.errno, "QUERY: %s%s" % (os.strerror(e.errno), hint)) from None
    abi, _, ver, backend, ndev, max_segs, chunk, name, uuids = _QUERY.unpack(buf)
    ndev = min(ndev, MAX_DEVICES)
    return Query(abi, (ver >> 16, (ver >> 8) & 0xff, ver & 0xff), backend,
                 name.split(b"\0", 1)[0].decode(errors="replace"), ndev, max_segs, chunk,
                 [uuids[16 * i:16 * i + 16] for i in range(ndev)])


# ---- the GPU runtime, through ctypes ------------------------------------

# An allocation as the daemon needs it; id is the runtime's buffer id.
_Alloc = collections.namedtuple("_Alloc", "id base size uuid handle")


def _sym(lib, names, argtypes, restype=ctypes.c_int):
    for name in names:
        try:
            f = getattr(lib, name)
        except AttributeError:
            continue
        f.argtypes, f.restype = argtypes, restype
        return f
    raise KvfsError(errno.ENODEV, "%s lacks %s" % (lib._name, names[0]), E_LIB_RUNTIME)


class _Cuda:
    """The CUDA driver API (cuda.h): the few calls and enum values used."""
    vendor = GPU_CUDA
    ATTR_CONTEXT, ATTR_BUFFER_ID, ATTR_DEVICE_ORDINAL, ATTR_IS_LEGACY_IPC = 1, 7, 9, 10  # CUpointer_attribute

    def __init__(self):
        try:
            lib = ctypes.CDLL("libcuda.so.1")
        except OSError as e:
            raise KvfsError(errno.ENODEV, "cannot load the CUDA driver: %s" % e, E_LIB_RUNTIME) from None
        vp, u64, i32 = ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_int
        self.attr = _sym(lib, ["cuPointerGetAttribute"], [vp, i32, u64])
        self.range = _sym(lib, ["cuMemGetAddressRange_v2"], [vp, vp, u64])
        self.ipc = _sym(lib, ["cuIpcGetMemHandle"], [vp, u64])
        self.dev = _sym(lib, ["cuDeviceGet"], [vp, i32])
        self.uuid = _sym(lib, ["cuDeviceGetUuid_v2", "cuDeviceGetUuid"], [vp, i32])
        self.push = _sym(lib, ["cuCtxPushCurrent_v2"], [vp])
        self.pop = _sym(lib, ["cuCtxPopCurrent_v2"], [vp])
        self.errname = _sym(lib, ["cuGetErrorName"], [i32, vp])
        r = _sym(lib, ["cuInit"], [ctypes.c_uint])(0)
        if r:
            raise KvfsError(errno.ENODEV, "cuInit: %s" % self._name(r), E_LIB_RUNTIME)

    def _name(self, r):
        s = ctypes.c_char_p()
        self.errname(r, ctypes.byref(s))
        return s.value.decode() if s.value else "CUDA error %d" % r

    def _check(self, r, detail, call, p):
        if r:
            hint = "; " + _EXPORT_HINT if detail == E_LIB_EXPORT else ""
            raise KvfsError(errno.EINVAL, "%s(0x%x): %s%s" % (call, p, self._name(r), hint), detail)

    def buffer_id(self, p):
        v = ctypes.c_ulonglong()
        self._check(self.attr(ctypes.byref(v), self.ATTR_BUFFER_ID, p), E_LIB_POINTER,
                    "cuPointerGetAttribute(BUFFER_ID)", p)
        return v.value

    def describe(self, p, buffer_id):
        ok, ctx = ctypes.c_int(), ctypes.c_void_p()
        # Asked first for the clear message; an old driver that does not
        # know the attribute leaves it to cuIpcGetMemHandle to refuse.
        if self.attr(ctypes.byref(ok), self.ATTR_IS_LEGACY_IPC, p) == 0 and not ok.value:
            raise KvfsError(errno.EINVAL, "0x%x has no CUDA IPC handle: %s" % (p, _EXPORT_HINT),
                            E_LIB_EXPORT)
        # Work in the allocation's own context: the thread's current one may
        # belong to another device, or be missing in a fresh thread.
        pushed = (self.attr(ctypes.byref(ctx), self.ATTR_CONTEXT, p) == 0 and ctx.value
                  and self.push(ctx) == 0)
        try:
            return self._describe_current(p, buffer_id)
        finally:
            if pushed:
                self.pop(ctypes.byref(ctypes.c_void_p()))

    def _describe_current(self, p, buffer_id):
        base, size, ordinal, dev = ctypes.c_ulonglong(), ctypes.c_size_t(), ctypes.c_int(), ctypes.c_int()
        uuid, handle = ctypes.create_string_buffer(16), ctypes.create_string_buffer(IPC_HANDLE_SIZE)
        self._check(self.range(ctypes.byref(base), ctypes.byref(size), p), E_LIB_POINTER,
                    "cuMemGetAddressRange", p)
        self._check(self.attr(ctypes.byref(ordinal), self.ATTR_DEVICE_ORDINAL, p), E_LIB_POINTER,
                    "cuPointerGetAttribute(DEVICE_ORDINAL)", p)
        self._check(self.dev(ctypes.byref(dev), ordinal), E_LIB_POINTER, "cuDeviceGet", p)
        self._check(self.uuid(uuid, dev), E_LIB_POINTER, "cuDeviceGetUuid", p)
        self._check(self.ipc(handle, base), E_LIB_EXPORT, "cuIpcGetMemHandle", base.value)
        return _Alloc(buffer_id, base.value, size.value, uuid.raw, handle.raw)


class _Hip:
    """The HIP runtime API (hip_runtime_api.h): the few calls used."""
    vendor = GPU_HIP
    ATTR_BUFFER_ID, ATTR_DEVICE_ORDINAL = 7, 9  # hipPointer_attribute
    # Prefer a copy already loaded (PyTorch ships its own): two HIP
    # runtimes in one process do not share allocations.
    NAMES = ["libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5"]

    def __init__(self):
        lib = self._load()
        vp, i32 = ctypes.c_void_p, ctypes.c_int
        self.attr = _sym(lib, ["hipPointerGetAttribute"], [vp, i32, vp])
        self.range = _sym(lib, ["hipMemGetAddressRange"], [vp, vp, vp])
        self.ipc = _sym(lib, ["hipIpcGetMemHandle"], [vp, vp])
        self.dev = _sym(lib, ["hipDeviceGet"], [vp, i32])
        self.uuid = _sym(lib, ["hipDeviceGetUuid"], [vp, i32])
        self.errname = _sym(lib, ["hipGetErrorName"], [i32], ctypes.c_char_p)

    def _load(self):
        for mode in (os.RTLD_NOLOAD, os.RTLD_LOCAL):
            for name in self.NAMES:
                try:
                    return ctypes.CDLL(name, mode=mode | os.RTLD_NOW)
                except OSError as e:
                    why = e
        raise KvfsError(errno.ENODEV, "cannot load the HIP runtime: %s" % why, E_LIB_RUNTIME)

    def _check(self, r, detail, call, p):
        if r:
            name = (self.errname(r) or b"HIP error %d" % r).decode()
            hint = "; " + _EXPORT_HINT if detail == E_LIB_EXPORT else ""
            raise KvfsError(errno.EINVAL, "%s(0x%x): %s%s" % (call, p, name, hint), detail)

    def buffer_id(self, p):
        v = ctypes.c_ulonglong()
        self._check(self.attr(ctypes.byref(v), self.ATTR_BUFFER_ID, p), E_LIB_POINTER,
                    "hipPointerGetAttribute(BUFFER_ID)", p)
        return v.value

    def describe(self, p, buffer_id):
        base, size, ordinal, dev = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_int(), ctypes.c_int()
        uuid, handle = ctypes.create_string_buffer(16), ctypes.create_string_buffer(IPC_HANDLE_SIZE)
        self._check(self.range(ctypes.byref(base), ctypes.byref(size), p), E_LIB_POINTER,
                    "hipMemGetAddressRange", p)
        self._check(self.attr(ctypes.byref(ordinal), self.ATTR_DEVICE_ORDINAL, p), E_LIB_POINTER,
                    "hipPointerGetAttribute(DEVICE_ORDINAL)", p)
        self._check(self.dev(ctypes.byref(dev), ordinal), E_LIB_POINTER, "hipDeviceGet", p)
        self._check(self.uuid(uuid, dev), E_LIB_POINTER, "hipDeviceGetUuid", p)
        self._check(self.ipc(handle, base), E_LIB_EXPORT, "hipIpcGetMemHandle", base.value or 0)
        return _Alloc(buffer_id, base.value or 0, size.value, uuid.raw, handle.raw)


# Loaded once per process, for the backend the first daemon asked reports:
# a process drives one GPU vendor.
_rt = None
_rt_lock = threading.Lock()


def _runtime(fd):
    global _rt
    with _rt_lock:
        if _rt is None:
            backend = query(fd).backend
            if backend == GPU_NONE:
                raise KvfsError(errno.ENODEV, "the kvfs daemon runs no GPU backend", E_NO_BACKEND)
            if backend not in (GPU_CUDA, GPU_HIP):
                raise KvfsError(errno.ENODEV, "the kvfs daemon runs GPU backend %d, unknown here"
                                % backend, E_VENDOR)
            _rt = _Cuda() if backend == GPU_CUDA else _Hip()
        return _rt


# Exported handles by buffer id; engines reuse a few large allocations.
_CACHE_SLOTS = 64
_cache = collections.OrderedDict()
_cache_lock = threading.Lock()


def _resolve(rt, p):
    bid = rt.buffer_id(p)
    with _cache_lock:
        a = _cache.get(bid)
        if a is not None:
            _cache.move_to_end(bid)
            return a
    a = rt.describe(p, bid)
    if bid:
        with _cache_lock:
            _cache[bid] = a
            while len(_cache) > _CACHE_SLOTS:
                _cache.popitem(last=False)
    return a


# ---- requests -----------------------------------------------------------

def _send(fd, cmd, vendor, a, segs):
    """One ioctl for up to MAX_SEGS (index, file_off, dev_off, len) of allocation a."""
    buf = bytearray(_IO_SIZE)
    _IO_HDR.pack_into(buf, 0, ABI_VERSION, _IO_SIZE, vendor, 0, a.handle, a.uuid, a.size,
                      len(segs), 0, 0, 0, 0)
    for j, (_, file_off, dev_off, length) in enumerate(segs):
        _SEG.pack_into(buf, _IO_HDR.size + j * _SEG.size, file_off, dev_off, length)
    op = "GPU_READ" if cmd == IOC_GPU_READ else "GPU_WRITE"
    try:
        fcntl.ioctl(fd, cmd, buf, True)  # the kernel copies the struct back even on failure
    except OSError as e:
        hdr = _IoHdr._make(_IO_HDR.unpack_from(buf))
        detail, error_seg = hdr.detail, hdr.error_seg
        if e.errno == errno.ENOTTY:
            raise KvfsError(e.errno, "%s: not a file on a kvfs mount" % op) from None
        if detail == E_OK or error_seg >= len(segs):
            raise KvfsError(e.errno, "%s: %s" % (op, os.strerror(e.errno)), detail) from None
        index = segs[error_seg][0]
        raise KvfsError(e.errno, "%s: %s: %s (entry %d): %s" % (
            op, detail_name(detail), DETAILS.get(detail, ("", "?"))[1], index,
            os.strerror(e.errno)), detail, index) from None
    return _IoHdr._make(_IO_HDR.unpack_from(buf)).bytes_done


def _gpu_io(fd, cmd, ranges):
    rt = _runtime(fd)
    groups = {}  # (buffer id, base) -> (allocation, its segments); in first-seen order
    for i, (p, file_off, length) in enumerate(ranges):
        if length == 0:
            continue
        a = _resolve(rt, p)
        if p - a.base + length > a.size:
            raise KvfsError(errno.EFAULT, "entry %d (%d bytes at 0x%x) runs past its allocation "
                            "(%d bytes at 0x%x)" % (i, length, p, a.size, a.base), E_DEV_RANGE, i)
        groups.setdefault((a.id, a.base), (a, []))[1].append((i, file_off, p - a.base, length))
    total = 0
    for a, segs in groups.values():
        for k in range(0, len(segs), MAX_SEGS):
            total += _send(fd, cmd, rt.vendor, a, segs[k:k + MAX_SEGS])
    return total


def gpu_readv(fd, ranges):
    """File -> GPU for raw ranges (dev_ptr, file_off, length), dev_ptr an
    int anywhere inside a cudaMalloc/hipMalloc allocation. Ranges in one
    allocation share an ioctl. Returns the bytes copied; after a failure,
    which ranges were copied is unspecified. No stream is synchronised."""
    return _gpu_io(fd, IOC_GPU_READ, ranges)


def gpu_writev(fd, ranges):
    """GPU -> file, like gpu_readv; fd must be open for writing."""
    return _gpu_io(fd, IOC_GPU_WRITE, ranges)


# ---- tensors ------------------------------------------------------------

def _tensor_ranges(pairs):
    """(dev_ptr, file_off, nbytes) of each (tensor, file_off), after
    synchronising the current stream of each device involved."""
    ranges, devices = [], set()
    for t, file_off in pairs:
        if not (hasattr(t, "is_cuda") and hasattr(t, "data_ptr")):
            raise TypeError("kvfs: the GPU calls take torch tensors on a GPU, not %s (arrays in "
                            "host memory: kvfs.save_array and kvfs.load_array)"
                            % type(t).__name__)
        if not t.is_cuda:
            raise ValueError("kvfs: tensor on %s, not on a GPU" % t.device)
        if not t.is_contiguous():
            raise ValueError("kvfs: tensor must be contiguous (use .contiguous())")
        ranges.append((t.data_ptr(), file_off, t.numel() * t.element_size()))
        devices.add(t.device)
    import torch  # the tensors above are torch's: it is installed

    for d in devices:
        torch.cuda.current_stream(d).synchronize()
    return ranges


_SAVE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def save_tensors(path_or_fd, pairs):
    """Write each (tensor, file_off) of pairs to the file. Returns bytes written."""
    ranges = _tensor_ranges(pairs)
    with _opened(path_or_fd, _SAVE_FLAGS) as fd:
        return gpu_writev(fd, ranges)


def load_tensors(path_or_fd, pairs):
    """Fill each (tensor, file_off) of pairs from the file. Returns bytes read."""
    ranges = _tensor_ranges(pairs)
    with _opened(path_or_fd, os.O_RDONLY) as fd:
        return gpu_readv(fd, ranges)


def save_tensor(tensor, path_or_fd, file_off=0):
    return save_tensors(path_or_fd, [(tensor, file_off)])


def load_tensor(path_or_fd, tensor, file_off=0):
    return load_tensors(path_or_fd, [(tensor, file_off)])


def load_new(path_or_fd, shape, dtype, device="cuda", file_off=0):
    """A new tensor of shape and dtype on device, filled from the file."""
    import torch

    t = torch.empty(shape, dtype=dtype, device=device)
    load_tensor(path_or_fd, t, file_off)
    return t


def main(argv=None):
    """python3 -m kvfs PATH: print what the kvfs daemon behind PATH can do."""
    import sys

    argv = sys.argv if argv is None else argv
    if len(argv) != 2:
        sys.exit("usage: python3 -m kvfs PATH   # print what the kvfs daemon behind PATH can do")
    try:
        q = query(argv[1])
    except OSError as e:
        sys.exit("%s: %s" % (argv[1], e.strerror))
    print("kvfs %d.%d.%d, ABI %d, backend %s (%d), %d devices, %d segments a request, chunk %d"
          % (q.kvfs_version + (q.abi_version, q.backend_name, q.backend, q.ndevices, q.max_segs,
                               q.chunk_size)))
    for i, u in enumerate(q.device_uuids):
        print("device %d: %s" % (i, u.hex()))
