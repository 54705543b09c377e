"""Crash-safe writes: a temp file in the same folder, fsync, then an atomic rename.

A reader never sees a half-written file under the final name: it sees the old
file or the new one.  A write that fails raises :class:`ConvscopeError`; it never
passes silently.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from convscope.errors import ConvscopeError

TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some filesystems don't allow opening folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def write_error(path: Path, exc: BaseException) -> ConvscopeError:
    """The one sentence for a failed write: a full disk says so; anything else names the
    cause.  safetensors reports a full disk as a ``SafetensorError``, not an ``OSError``."""
    if getattr(exc, "errno", None) in FULL or "No space left" in str(exc) or \
            "os error 28" in str(exc):
        return ConvscopeError(f"could not write {path}: the disk is full (No space left on "
                              "device); free some space or write to another folder.")
    reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:160] or type(exc).__name__
    return ConvscopeError(f"could not write {path} ({reason}); check that the folder is "
                          "writable and has free space.")


def _umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_errors() -> tuple[type[BaseException], ...]:
    return (OSError, SafetensorError)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    >>> with atomic_path("model.safetensors") as tmp:   # doctest: +SKIP
    ...     save_file(tensors, tmp)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes the file 0600 (and a writer may re-create it): the final file gets
        # the mode any normal write would, from the umask
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except _write_errors() as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` and fsync it; a failed write raises ConvscopeError."""
    path = Path(path)
    try:
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise write_error(path, exc) from None


def remove_stale_temps(folder: str | os.PathLike, name: str) -> int:
    """Delete temp files a killed writer of ``folder/name`` left behind; return how many."""
    count = 0
    for stale in Path(folder).glob(f".{name}.*{TMP_SUFFIX}"):
        try:
            stale.unlink()
            count += 1
        except OSError:
            pass
    return count
