"""A generation file a store searches through a mapping, checked before each search
(``IndexStore.search``); a change is a ``StoreError``."""
from __future__ import annotations

import os
from pathlib import Path


class MappedFile:
    """A generation file that searches read through a read-only mapping, watched through a descriptor
    held open (so a writer deleting the file after a commit, which POSIX allows, changes nothing).

    Generation files are never changed once written, but a person or a failing disk can: reading a
    mapped page past a truncated file's end kills the process with SIGBUS, and a rewritten page
    gives other ids with no error. ``changed`` (one ``fstat``, about a microsecond) runs before each
    search; the store turns a changed size or modification time into a ``StoreError``. A file truncated in
    the microseconds between the check and the read still faults: the check narrows that window to
    one search, it does not close it."""

    def __init__(self, path: Path):
        self.path, self._fd = path, None  # set before the open, so a failed open leaves nothing to close
        self._fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        self._key = (st.st_size, st.st_mtime_ns)

    def changed(self) -> str | None:
        """Why the file is not the one mapped (its size or time changed), or None."""
        if self._fd is None:
            return None
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) == self._key:
            return None
        return (f"{self.path}: changed on disk while in use ({st.st_size} bytes, {self._key[0]} when opened): index "
                "files are never rewritten, so it was damaged or replaced by hand; restore it or rebuild the index "
                "(`cmhash index build --overwrite`)")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()
