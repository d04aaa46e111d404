"""Atomic file output shared by every layer that writes results."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[str], None], suffix: str = "") -> str:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into
    place.

    A crash or an exception in ``write`` never leaves a truncated file at ``path`` (a
    previous result there survives) nor a temporary file behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a folder.")
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=".sdeppl-", suffix=suffix + ".part", dir=directory
        )
    except OSError as e:  # a file where a folder should be, no permission, ...
        raise OSError(
            f"cannot write {path!r}: {e.strerror or e} (in {directory!r})."
        ) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
