"""The item catalogue of a store: one SQLite file per generation (id, source relative to its root,
caption, labels, root), read through one read-only connection, and the next generation's file,
staged on disk as changes come."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np

from .files import StoreError

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, source TEXT, caption TEXT, labels TEXT, root INTEGER)"


class Catalogue:
    """The items of one store folder: ``records``/``captions`` read the committed generation's
    file (``path``), ``stage`` opens the next generation's, ``take_stage`` hands it to the commit."""

    def __init__(self, folder: Path, path: Path | None, con: sqlite3.Connection | None = None,
                 cols: str | None = None):
        self.folder, self.path = folder, path
        self._db = (con, cols) if con is not None else None
        self._mutex = threading.Lock()
        self._staged = None  # (path, connection): the next generation's items file

    # --- the committed generation ---------------------------------------------------------------
    def _read(self, columns: str | None, rest: str, args) -> list:
        """``SELECT columns FROM items rest`` (``columns`` None: the item's columns, as this file has them)."""
        with self._mutex:
            if self._db is None:
                self._db = connect(self.path)
            con, cols = self._db
            try:
                return con.execute(f"SELECT {columns or cols} FROM items {rest}", args).fetchall()
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.path}: damaged (not a readable items database: {e})") from None

    def records(self, ids) -> dict[int, dict]:
        """id -> {id, source, caption, labels, root} of ``ids`` (those not present are left out)."""
        try:
            ids = [int(i) for i in np.asarray(ids).ravel()]
        except (TypeError, ValueError, OverflowError):
            return {}
        ids = [i for i in ids if 0 <= i < 2**63]  # SQLite integers; anything else is no item
        out: dict[int, dict] = {}
        if not ids or self.path is None:
            return out
        for s in range(0, len(ids), 900):
            part = ids[s:s + 900]
            for i, src, cap, lab, root in self._read(None, f"WHERE id IN ({','.join('?' * len(part))})", part):
                if src and os.path.isabs(src):  # a store from before roots: no server path is shown
                    src = os.path.basename(src)
                out[i] = {"id": i, "source": src, "caption": cap, "labels": json.loads(lab or "[]"), "root": root}
        return out

    def source_path(self, item_id, roots: list[str]) -> Path | None:
        """The image file of an item, only when it lies inside its root folder (``roots[root]``,
        symbolic links resolved); None when the item has no file there."""
        rec = self.records([item_id]).get(int(item_id)) if isinstance(item_id, (int, np.integer)) else None
        if not rec or not rec["source"] or rec["root"] is None or not 0 <= rec["root"] < len(roots):
            return None
        root = Path(roots[rec["root"]]).resolve()
        p = (root / rec["source"]).resolve()
        return p if p.is_relative_to(root) and p.is_file() else None

    def captions(self, limit: int) -> list[str]:
        if self.path is None:
            return []
        rows = self._read("caption", "WHERE caption IS NOT NULL ORDER BY id LIMIT ?", (int(limit),))
        return [r[0] for r in rows if r[0]]

    def switch(self, path: Path) -> None:
        """Read from a newly committed generation's file."""
        with self._mutex:
            if self._db is not None:
                self._db[0].close()
            self.path, self._db = path, connect(path)

    # --- the next generation --------------------------------------------------------------------
    def stage(self, copy_of: Path | None) -> sqlite3.Connection:
        """The next generation's items file, opened at the first change (a copy of ``copy_of``, the
        current one, or empty) and written as changes come, so uncommitted records wait on disk, not
        in memory. It is a hidden ``.tmp`` file until the commit renames it; a killed writer's is
        deleted by the next commit."""
        if self._staged is None:
            path = self.folder / f".items-staging-{os.getpid()}-{id(self):x}.tmp"
            con = None
            try:
                if copy_of is not None and copy_of.exists():
                    shutil.copyfile(copy_of, path)
                else:
                    path.unlink(missing_ok=True)
                con = sqlite3.connect(path, check_same_thread=False)
                con.execute("PRAGMA journal_mode=OFF")  # a private file until the commit, which fsyncs it
                con.execute("PRAGMA synchronous=OFF")
                con.execute(SCHEMA)
                if "root" not in {r[1] for r in con.execute("PRAGMA table_info(items)")}:
                    con.execute("ALTER TABLE items ADD COLUMN root INTEGER")  # a store from before roots
            except BaseException:  # a full disk while copying: no staging file is left
                if con is not None:
                    con.close()
                path.unlink(missing_ok=True)
                raise
            self._staged = (path, con)
        return self._staged[1]

    def check_stage(self, expect: int) -> None:
        """The staged file holds ``expect`` records (validated before anything is replaced; else an
        error and nothing changes)."""
        con = self._staged[1]
        con.commit()
        (count,) = con.execute("SELECT COUNT(*) FROM items").fetchone()
        if count != expect:
            raise StoreError(f"{self.folder}: the new generation would hold {expect} codes but {count} item "
                             "records; nothing was changed")

    def take_stage(self) -> Path:
        """The staged file, closed and fsynced, for the commit to rename."""
        path, con = self._staged
        con.close()
        self._staged = None
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        return path

    def drop_stage(self) -> None:
        if self._staged is not None:
            path, con = self._staged
            con.close()
            path.unlink(missing_ok=True)
            self._staged = None

    def close(self) -> None:
        self.drop_stage()
        with self._mutex:
            if self._db is not None:
                self._db[0].close()
                self._db = None


def open_items(path: Path) -> sqlite3.Connection:
    """A read-only connection to a generation's items file (never changed once written); nothing is
    read from it until ``item_columns``, so its size and checksum are checked first."""
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def item_columns(con: sqlite3.Connection, path: Path) -> str:
    """The columns to select from an items file (a store from before roots has no ``root`` column),
    read once; a file that is not an SQLite database is the "damaged" error the other files get."""
    try:
        has_root = "root" in {r[1] for r in con.execute("PRAGMA table_info(items)")}
    except sqlite3.DatabaseError as e:
        con.close()
        raise StoreError(f"{path}: damaged (not a readable items database: {e})") from None
    return "id, source, caption, labels" + (", root" if has_root else ", NULL")


def connect(path: Path) -> tuple[sqlite3.Connection, str]:
    """``open_items`` and ``item_columns`` together: a connection and its columns."""
    con = open_items(path)
    return con, item_columns(con, path)
