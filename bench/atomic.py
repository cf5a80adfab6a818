"""Write files so that a reader never sees half of one: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PARTIAL = ".partial"  # the suffix of atomic_path's temporary files: never read as a result


def umask() -> int:
    """The process's umask (read from /proc where there is one: setting it to read it races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on failure it is removed.

    The file gets the mode any new file gets (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_leftovers(path: str | os.PathLike) -> None:
    """Remove the temporary files that writers of ``path`` killed mid-write (SIGKILL skips their clean-up) left beside it.

    Only for a caller that holds the right to write ``path`` alone (a lock): a live writer's file would go too.
    """
    path = Path(path)
    for leftover in path.parent.glob(f".{path.name}.*{PARTIAL}"):
        leftover.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str, allow_nan=allow_nan) + "\n").encode())
