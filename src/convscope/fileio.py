"""Crash-safe writes: a temp file in the same folder, fsync, then an atomic rename.

A reader never sees a half-written file under the final name: it sees the old
file or the new one.  A write that fails raises :class:`ConvscopeError`; it never
passes silently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        raise ConvscopeError(f"could not write {path} ({exc.strerror or exc}); check that the "
                             "folder exists, is writable and has free space.") from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConvscopeError(f"could not write {path} ({exc.strerror or exc}); check that the "
                             "folder is writable and has free space.") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


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
