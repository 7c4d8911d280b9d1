"""Write files so that a failure never leaves a half-written result behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; a finished file gets the mode a plain open() would give it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def output_folder(folder: str | os.PathLike, option: str) -> Path:
    """``folder`` created (with its parents) for outputs given by ``option``, checked before any
    work starts: a file in the way or a place that cannot be written is a one-line error."""
    from .errors import SaliqError

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise SaliqError(f"{option} {path} is a file; pass a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaliqError(
            f"{option}: cannot create {path} ({exc.strerror or exc}); pass a folder you can "
            "write to"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SaliqError(f"{option}: {path} is not writable; pass a folder you can write to")
    return path
