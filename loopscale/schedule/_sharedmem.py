"""Pickling with NumPy arrays in shared memory, as joblib memory-maps them.

:func:`dumps` pickles with :class:`Pickler`, whose ``reducer_override`` takes
every NumPy array of at least ``max_nbytes`` bytes (and no Python objects
inside) out of the pickle:

* the array's bytes are written once into a file in ``/dev/shm`` (a
  *segment*) and the pickle carries only ``(path, offset, shape, dtype,
  strides, mode)``; :func:`rebuild_array` maps the file on the other side;
* ``mode`` is how the receiver maps it: ``"r"`` read-only and ``"c"``
  copy-on-write for arguments (a task cannot change the caller's data),
  ``"r+"`` for results and shared arrays;
* an array made by :func:`share_array` already lives in a segment: it goes by
  reference whatever its size, never copied, and receivers may write into it;
* in a worker, an array that came in through a segment (read-only) and goes
  back out as a result is sent by reference too, and mapped copy-on-write by
  the parent (a result is writable).

Who removes a segment's file: the sender of a task's arguments once the
task's reply is in (``Pickler.created``); the receiver of a result right
after mapping it (``unlink_on_receipt``), so that the result is an ordinary
array whose memory goes when it is collected; a shared array's finalizer.
Every name starts with the :class:`Space`'s prefix, so :meth:`Space.sweep`
removes whatever a crash left behind.  A mapping stays valid after its file is
removed.  When ``/dev/shm`` is full, segments go to the temporary directory.
"""

from __future__ import annotations

import errno
import io
import itertools
import mmap
import os
import pickle
import tempfile
import weakref
from typing import Any

import numpy as np

__all__ = ["MMAP_MODES", "DEFAULT_MAX_NBYTES", "Space", "Pickler", "dumps", "rebuild_array",
           "share_array", "task_maps", "track_task_maps", "unlink_quietly"]

#: Valid ``mmap_mode`` values: how a task sees a copied array argument.
MMAP_MODES = ("r", "c")
#: Arrays at least this large (bytes) go through shared memory by default.
DEFAULT_MAX_NBYTES = 1 << 20

#: In a worker process, the segments mapped for the current task:
#: ``id(mmap) -> (mmap, path, base address, mode)``.  None elsewhere.
_TASK_MAPS: dict[int, tuple[mmap.mmap, str, int, str]] | None = None
#: Arrays made by :func:`share_array`: ``id(mmap) -> (path, base address)``.
_SHARED: dict[int, tuple[str, int]] = {}


def _directories() -> tuple[str, ...]:
    tmp = tempfile.gettempdir()
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) and tmp != "/dev/shm":
        return ("/dev/shm", tmp)
    return (tmp,)


def _address(mm: mmap.mmap) -> int:
    return int(np.frombuffer(mm, np.uint8).ctypes.data)


def _contiguous_strides(shape: tuple[int, ...], itemsize: int, order: str) -> tuple[int, ...]:
    strides, step = [], itemsize
    dims = range(len(shape))
    for d in (dims if order == "F" else reversed(dims)):
        strides.append(step)
        step *= max(shape[d], 1)
    return tuple(strides if order == "F" else reversed(strides))


def _write_segment(path: str, arr: np.ndarray) -> tuple[int, ...]:
    """Write *arr*'s values into a new file at *path*; return the strides of the copy.

    A C- or Fortran-contiguous array is written in its own order with
    ``write(2)``, which fails cleanly when the file system is full (stores
    through a mapping would crash with SIGBUS); any other array is copied in
    C order through a mapping of space reserved first.
    """
    order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if arr.flags.c_contiguous or arr.flags.f_contiguous:
            view, done = (arr.T if order == "F" else arr).reshape(-1).view(np.uint8).data, 0
            while done < len(view):
                done += os.write(fd, view[done:])
        else:
            os.posix_fallocate(fd, 0, arr.nbytes)
            with mmap.mmap(fd, arr.nbytes) as mm:
                dst = np.ndarray(arr.shape, arr.dtype, buffer=mm)
                np.copyto(dst, arr)
                del dst
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return _contiguous_strides(arr.shape, arr.dtype.itemsize, order)


def rebuild_array(path: str, offset: int, shape: tuple[int, ...], dtype: np.dtype[Any],
                  strides: tuple[int, ...], mode: str, unlink: bool) -> np.ndarray:
    """Map a segment and view it as an array (what :class:`Pickler` pickles arrays to)."""
    fd = os.open(path, os.O_RDWR if mode == "r+" else os.O_RDONLY)
    try:
        flags = (mmap.MAP_PRIVATE if mode == "c" else mmap.MAP_SHARED) \
            | getattr(mmap, "MAP_POPULATE", 0)
        prot = mmap.PROT_READ | (0 if mode == "r" else mmap.PROT_WRITE)
        mm = mmap.mmap(fd, os.fstat(fd).st_size, flags=flags, prot=prot)
    finally:
        os.close(fd)
        if unlink:
            os.unlink(path)
    if _TASK_MAPS is not None:
        _TASK_MAPS[id(mm)] = (mm, path, _address(mm), mode)
    return np.ndarray(shape, dtype, buffer=mm, offset=offset, strides=strides)


def track_task_maps(on: bool) -> None:
    """In a worker: start (or stop) recording the segments a task's arguments map."""
    global _TASK_MAPS
    _TASK_MAPS = {} if on else None


def task_maps() -> dict[int, tuple[mmap.mmap, str, int, str]] | None:
    """In a worker, while recording: the segments the running task's arguments
    map, each with its path, address and mode (``"r"``: read-only)."""
    return _TASK_MAPS


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Space:
    """Where one sender writes segments, and how its receiver maps copied arrays."""

    def __init__(self, prefix: str, max_nbytes: int, mode: str,
                 directories: tuple[str, ...] | None = None) -> None:
        self.prefix = prefix
        self.max_nbytes = max_nbytes
        self.mode = mode
        self.directories = directories or _directories()
        self.count = itertools.count().__next__

    def __reduce__(self) -> tuple[Any, ...]:  # for a worker: no counter state
        return Space, (self.prefix, self.max_nbytes, self.mode, self.directories)

    def write(self, arr: np.ndarray, tag: str = "") -> tuple[str, tuple[int, ...]]:
        """Copy *arr* into a new segment; return its path and the copy's strides."""
        name = f"{self.prefix}{tag}{self.count()}"
        for directory in self.directories:
            path = os.path.join(directory, name)
            try:
                return path, _write_segment(path, arr)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or directory == self.directories[-1]:
                    raise
        raise AssertionError("unreachable")

    def sweep(self) -> None:
        """Remove every segment with this prefix (all of them finished with)."""
        for key, (path, _) in list(_SHARED.items()):
            if os.path.basename(path).startswith(self.prefix):
                del _SHARED[key]  # from now on the array is copied like any other
        for directory in self.directories:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if name.startswith(self.prefix):
                    unlink_quietly(os.path.join(directory, name))


class Pickler(pickle.Pickler):
    """A pickler that sends large NumPy arrays through shared memory.

    ``created`` lists the segments it wrote; ``kept`` the shared arrays it
    referred to (to keep alive until the receiver has mapped them);
    ``shared_bytes`` the array bytes that did not go into the pickle.
    """

    def __init__(self, file: io.BytesIO, space: Space, unlink_on_receipt: bool) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.space = space
        self.unlink_on_receipt = unlink_on_receipt
        self.created: list[str] = []
        self.kept: list[np.ndarray] = []
        self.shared_bytes = 0

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not np.ndarray and type(obj) is not np.memmap:
            return NotImplemented
        arr = np.asarray(obj)
        ref = self._reference(arr)  # shared arrays go by reference whatever their size
        if ref is None:
            if arr.nbytes < self.space.max_nbytes or arr.nbytes == 0 or arr.dtype.hasobject:
                return NotImplemented
            path, strides = self.space.write(arr)
            self.created.append(path)
            ref = (path, 0, strides, self.space.mode, self.unlink_on_receipt)
        path, offset, strides, mode, unlink = ref
        self.shared_bytes += arr.nbytes
        return rebuild_array, (path, offset, arr.shape, arr.dtype, strides, mode, unlink)

    def _reference(self, arr: np.ndarray) -> tuple[str, int, tuple[int, ...], str, bool] | None:
        """A reference to the segment *arr* lives in already, if it may be shared."""
        owner: Any = arr
        while isinstance(owner, np.ndarray):
            owner = owner.base
        if type(owner) is not mmap.mmap:
            return None
        address = arr.__array_interface__["data"][0]
        shared = _SHARED.get(id(owner))
        if shared is not None:
            self.kept.append(arr)
            return shared[0], address - shared[1], arr.strides, "r+", False
        mapped = _TASK_MAPS.get(id(owner)) if _TASK_MAPS is not None else None
        if mapped is not None and mapped[3] != "c":  # a private copy may have been written
            # an argument (mapped read-only here) goes back as a result: the
            # receiver maps it copy-on-write, so that it gets a writable array,
            # as from any other result, and the caller's data stays as it was
            mode = "c" if mapped[3] == "r" else mapped[3]
            return mapped[1], address - mapped[2], arr.strides, mode, False
        return None


def dumps(obj: Any, space: Space, unlink_on_receipt: bool) -> tuple[bytes, Pickler]:
    """Pickle *obj*, large arrays through segments; the pickler tells what it made."""
    buf = io.BytesIO()
    pickler = Pickler(buf, space, unlink_on_receipt)
    try:
        pickler.dump(obj)
    except BaseException:
        for path in pickler.created:
            unlink_quietly(path)
        raise
    return buf.getvalue(), pickler


def share_array(space: Space, array: Any) -> np.ndarray:
    """A C-contiguous copy of *array* in a segment, sent by reference from then on."""
    src = np.asarray(array, order="C")  # (np.ascontiguousarray makes a 0-d array 1-d)
    if src.dtype.hasobject:
        raise TypeError("only arrays of numbers can be shared; this one holds Python objects "
                        f"(dtype {src.dtype!r}).")
    if src.nbytes == 0:
        return src.copy()
    path, _ = space.write(src, tag="s")
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, src.nbytes)
    finally:
        os.close(fd)
    _SHARED[id(mm)] = (path, _address(mm))
    weakref.finalize(mm, _forget_shared, id(mm), path)
    return np.ndarray(src.shape, src.dtype, buffer=mm)


def _forget_shared(key: int, path: str) -> None:
    _SHARED.pop(key, None)
    unlink_quietly(path)
