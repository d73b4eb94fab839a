"""Writing the page: a regular file atomically (beside its target, then a rename), a device
or FIFO in place; a symbolic link is followed. Every failure is one NNVizError."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import select
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import NNVizError

READER_WAIT = 10.0  # seconds a FIFO may wait for its reader to open it
READER_STALL = 60.0  # seconds a device or FIFO may take no data before the write fails


def output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or an NNVizError for what a Path would hide or the system refuse:
    a NUL byte, or a trailing slash (``out/``: a folder, which ``Path`` drops) on a name
    that is not an existing folder."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\0" in text:
        raise NNVizError(f"output path {text!r} contains a NUL byte; choose another output path")
    if text.endswith((os.sep, "/")) and not os.path.isdir(text):
        raise NNVizError(f"output {text} ends with a slash, a folder that does not exist; give a file name")
    return Path(text)


def check_output_path(target: Path) -> str:
    """How ``target`` will be written, or an NNVizError saying why it cannot be:
    ``"file"`` (a regular file, or none yet: written beside it and renamed over it; a
    symbolic link is followed, the file it names is replaced and the link stays) or
    ``"stream"`` (a character device such as /dev/null or a terminal, a FIFO or pipe, or a
    file reached through a descriptor path such as /dev/stdout, /dev/fd/N or /proc/...:
    written into, in place)."""
    try:
        st = os.stat(target)  # follows symbolic links
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise NNVizError(f"cannot use output {target}: {exc.strerror or exc}; choose another output path") from None
    if st is not None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise NNVizError(f"output {target} is a folder; give a file name such as {target / 'report.html'}")
        if stat.S_ISBLK(mode):
            raise NNVizError(
                f"output {target} is a block device; a report is never written onto a disk; give a file name"
            )
        if stat.S_ISSOCK(mode):
            raise NNVizError(f"output {target} is a socket; give a file name")
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or _through_descriptor(target):
            if not os.access(target, os.W_OK):
                raise NNVizError(f"cannot write to {target}: permission denied; choose another output path")
            return "stream"
        if not stat.S_ISREG(mode):
            raise NNVizError(f"output {target} is not a regular file; give a file name")
        if not os.access(target, os.W_OK):
            raise NNVizError(f"cannot replace {target}: permission denied; choose another output path")
    real = Path(os.path.realpath(target))
    parent = real.parent
    if not parent.is_dir():
        if os.path.islink(target):
            raise NNVizError(
                f"output {target} is a link to {real}, whose folder does not exist; "
                "create it or choose another output path"
            )
        raise NNVizError(f"output folder {target.parent} does not exist; create it or choose another output path")
    if not os.access(parent, os.W_OK):
        raise NNVizError(f"cannot write to {parent}: permission denied; choose another output path")
    return "file"


def _through_descriptor(target: Path) -> bool:
    """/dev/stdout, /dev/fd/3, /proc/self/fd/1: a file the process already has open; no
    temporary file can go beside it. (Not /dev/shm/report.html: a file like any other.)"""
    path = os.path.abspath(target)
    return path.startswith(("/proc/", "/dev/fd/")) or path in ("/dev/stdout", "/dev/stderr")


def write_output(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` as :func:`check_output_path` says."""
    if check_output_path(target) == "stream":
        _write_into(target, data)
    else:
        _replace(target, Path(os.path.realpath(target)), data)


def _error(target: Path, exc: OSError) -> NNVizError:
    reason = exc.strerror or str(exc)
    fix = "free some space or choose another output path" if exc.errno == errno.ENOSPC else "choose another output path"
    return NNVizError(f"cannot write {target}: {reason}; {fix}")


def _replace(shown: Path, real: Path, data: bytes) -> None:
    replace_file(real, lambda f: f.write(data), shown)


def replace_file(real: Path, write: Callable[[BinaryIO], object], shown: Path | None = None) -> None:
    """A temporary file beside ``real``, filled by ``write(f)``, flushed to disk, then
    renamed over it: an earlier file stays intact until the new one is complete. An
    interrupt (SIGINT) while this runs is held until the temporary file is gone, then
    delivered: the target is either the earlier file or the new one, and no temporary file
    is left. A new file gets the permissions the umask gives; a replaced one keeps its own.
    Every OSError is an NNVizError naming ``shown`` (default: ``real``)."""
    shown = shown or real
    try:
        keep_mode = stat.S_IMODE(os.stat(real).st_mode) & 0o777  # no set-id or sticky bits
    except OSError:
        keep_mode = None
    with _interrupts_held() as interrupted:
        fd, tmp = _temporary(shown, real)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                if keep_mode is not None:
                    os.fchmod(f.fileno(), keep_mode)
                os.fsync(f.fileno())
            if not interrupted:
                os.replace(tmp, real)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise _error(shown, exc) from exc
            raise
        if interrupted:  # delivered on leaving the block: the earlier file stays
            os.unlink(tmp)


def _temporary(shown: Path, real: Path) -> tuple[int, str]:
    """A new file beside ``real``, created with the permissions a new file gets (the
    process's umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(real.parent / f".{real.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise _error(shown, exc) from exc
    raise NNVizError(f"cannot write {shown}: no free temporary file name beside it; choose another output path")


@contextlib.contextmanager
def _interrupts_held() -> Iterator[list[int]]:
    """Inside the block, SIGINT is recorded (the list is not empty) instead of raising;
    on leaving it, the handler that was there before gets it. Python runs signal handlers
    in the main thread only: elsewhere the block changes nothing."""
    held: list[int] = []
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None:  # another thread, or a handler installed outside Python
        yield held
        return
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    except ValueError:  # not the main interpreter
        yield held
        return
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def _open_descriptor(target: Path) -> int | None:
    """The descriptor this process already has open that ``target`` names (/dev/stdout: 1,
    /dev/stderr: 2, /dev/fd/N and /proc/self/fd/N: N), or None. Writing through it keeps
    its offset and O_APPEND: ``-o /dev/stdout >> run.log`` appends to the log, where opening
    the path again would start at its beginning (or, with O_TRUNC, empty it)."""
    path = os.path.abspath(target)
    fixed = {"/dev/stdout": 1, "/dev/stderr": 2}
    if path in fixed:
        return fixed[path]
    for prefix in ("/dev/fd/", "/proc/self/fd/", f"/proc/{os.getpid()}/fd/"):
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            return int(path[len(prefix) :])
    return None


def _write_to_descriptor(target: Path, fd: int, data: bytes) -> None:
    """Write to a descriptor the process owns, as it is (blocking or not), in chunks no
    larger than a pipe takes without blocking once select() says it is writable."""
    view = memoryview(data)
    while view:
        try:
            if not select.select([], [fd], [], READER_STALL)[1]:
                raise NNVizError(
                    f"cannot write {target}: it took no data for {READER_STALL:g} s; choose another output path"
                )
            written = os.write(fd, view[: select.PIPE_BUF])
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise _error(target, exc) from exc
        view = view[written:]


def _write_into(target: Path, data: bytes) -> None:
    """Write into a device, FIFO or descriptor path, never waiting forever: a FIFO with no
    reader after READER_WAIT seconds, or a reader that takes no data for READER_STALL
    seconds, is an error."""
    own = _open_descriptor(target)
    if own is not None:
        _write_to_descriptor(target, own, data)
        return
    fifo = stat.S_ISFIFO(os.stat(target).st_mode)
    regular = stat.S_ISREG(os.stat(target).st_mode)  # /dev/stdout redirected to a file
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | (os.O_TRUNC if regular else 0)
    deadline = time.monotonic() + READER_WAIT
    while True:
        try:
            fd = os.open(target, flags)
            break
        except OSError as exc:
            if fifo and exc.errno == errno.ENXIO:  # no reader yet
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise NNVizError(
                    f"no process reads from {target} (waited {READER_WAIT:g} s); "
                    "start the reader first, or give a file name"
                ) from None
            raise _error(target, exc) from exc
    try:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view[: 1 << 20])
            except BlockingIOError:
                if not select.select([], [fd], [], READER_STALL)[1]:
                    raise NNVizError(
                        f"cannot write {target}: it took no data for {READER_STALL:g} s; choose another output path"
                    ) from None
                continue
            except OSError as exc:
                raise _error(target, exc) from exc
            view = view[written:]
    finally:
        os.close(fd)
