"""The store's files on disk: the manifest, generation files, checksums, fsync, leftovers of
killed writers (see ``cmhash.index.store`` for the commit protocol these serve)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path

from ...utils import CmhashError, disk_error, disk_errors

FORMAT = "cmhash-store-v1"
MODALITIES = ("image", "text")
LOCK_NAME = ".write.lock"
# at open, a generation's files are checksummed when they total at most this (about 0.1 s of sha256)
VERIFY_AT_OPEN_BYTES = 64 << 20
OPEN_TRIES = 5  # an open that lost the race with a commit is tried again, this many times in all
GEN_FILE = re.compile(r"^(image|text|items)-g(\d{6})\.(cmhidx|sqlite)$")


class StoreError(CmhashError):
    """A store folder is missing, damaged, or does not match the model or code length."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def read_manifest(path: Path, bits: int | None = None, fingerprint: str | None = None) -> dict:
    """The manifest of the store in ``path``, checked: its format and files, and (when given) the code
    length and model fingerprint the caller's codes must match."""
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise StoreError(f"{path}: not an index folder (no manifest.json); build one with `cmhash index build`")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"{mpath}: manifest is not valid JSON (damaged)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise StoreError(f"{mpath}: unknown format {got!r} (expected {FORMAT})")
    if bits is not None and manifest["bits"] != bits:
        raise StoreError(f"{path}: holds {manifest['bits']}-bit codes; this model makes {bits}-bit codes")
    have = manifest.get("model", {}).get("fingerprint")
    if fingerprint is not None and have and have != fingerprint:
        raise StoreError(f"{path}: built with model {have}, but this model is {fingerprint}: codes of different "
                         "models are not comparable (re-encode, or pass the model the index was built with)")
    return manifest


def manifest_key(path: Path):
    """What changes when a commit replaces the manifest (its inode, time and size), or None."""
    try:
        st = os.stat(path / "manifest.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def last_generation(path: Path) -> int:
    """The highest generation named by the manifest or by any generation file (a killed writer's)."""
    gens = [int(m.group(2)) for p in path.iterdir() if (m := GEN_FILE.match(p.name))] if path.is_dir() else []
    try:
        gens.append(int(json.loads((path / "manifest.json").read_text()).get("generation", 0)))
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        pass
    return max(gens, default=0)


def staged_by_live(name: str) -> bool:
    """Whether a staging file belongs to a process still running (an API writer that has not
    committed yet): only a dead writer's staging file is deleted."""
    m = re.match(r"^\.items-staging-(\d+)-", name)
    if not m:
        return False
    if int(m.group(1)) == os.getpid():
        return True  # another store of this process, still open
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_leftovers(path: Path, manifest: dict) -> None:
    """Delete the generation files ``manifest`` does not name (the previous generation, or those of
    a writer killed before or after its commit) and dead writers' staging files. Called by the
    writer holding the lock: at each commit, and when a writer opens the store (a re-run that has
    nothing left to change still cleans up after the killed one)."""
    keep = {f["path"] for f in manifest["files"].values()}
    for p in path.iterdir():
        stale = bool(GEN_FILE.match(p.name))
        killed_writer = p.name.startswith(".") and p.name.endswith(".tmp") and not staged_by_live(p.name)
        if p.is_file() and p.name not in keep and (stale or killed_writer):
            p.unlink(missing_ok=True)


def check_files(path: Path, manifest: dict, verify: bool | None) -> bool:
    """Every file the manifest names is there with its size; with ``verify`` (None: when they total
    at most ``VERIFY_AT_OPEN_BYTES``) its sha256 too. Returns whether the checksums were read."""
    if verify is None:
        verify = sum(int(f.get("bytes", 0)) for f in manifest["files"].values()) <= VERIFY_AT_OPEN_BYTES
    for name, f in manifest["files"].items():
        p = path / f["path"]
        if not p.is_file():
            raise StoreError(f"{p}: missing ({name} file of generation {manifest['generation']}); if a "
                             "writer just committed, open the index again")
        if p.stat().st_size != f["bytes"]:
            raise StoreError(f"{p}: {p.stat().st_size} bytes, the manifest says {f['bytes']} (truncated?)")
        if verify and sha256_file(p) != f["sha256"]:
            raise StoreError(f"{p}: checksum mismatch (the file was altered or damaged)")
    return bool(verify)


def committed_generation(path: Path, seen) -> tuple[object, int | None]:
    """(the manifest's key, its generation); the generation is None when the key is ``seen`` (not
    replaced since) or the manifest is mid-replace or damaged."""
    key = manifest_key(path)
    if key is None or key == seen:
        return key, None
    try:
        return key, int(json.loads((path / "manifest.json").read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return key, None


def disk_generation(path: Path) -> int:
    """The generation the manifest on disk names; -1 when it cannot be read."""
    try:
        return int(read_manifest(path)["generation"])
    except (StoreError, KeyError, ValueError, TypeError):
        return -1


def remove_generation(path: Path, gen: int) -> None:
    """Delete generation ``gen``'s files (a commit that failed before its manifest was written)."""
    for p in path.iterdir():
        m = GEN_FILE.match(p.name)
        if m and int(m.group(2)) == gen:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(path: Path):
    """A full disk (or a read-only, unwritable folder) while writing the store, from the files or
    from SQLite, is one ``CmhashError`` naming the folder."""
    try:
        with disk_errors(path, "index"):
            yield
    except sqlite3.OperationalError as e:
        if "full" not in str(e) and "disk" not in str(e) and "readonly" not in str(e):
            raise
        raise disk_error(OSError(errno.ENOSPC if "full" in str(e) else errno.EIO, str(e)), path, "index") from None
