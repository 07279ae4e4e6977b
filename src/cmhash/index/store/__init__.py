"""A searchable collection on disk: one index per modality, item metadata in SQLite, a manifest.

Layout of a store folder::

    manifest.json          format, code length, backend, model fingerprint, vocabulary, roots, files + sha256,
                           exact or approximate search per query direction (``search``)
    image-g000003.cmhidx   image codes (HammingIndex file), generation 3
    text-g000003.cmhidx    text codes
    items-g000003.sqlite   id, source (relative to its root), caption, labels, root
    .write.lock            held by the one writer at a time (``utils.WriteLock``)
    milvus.db              (backend milvus: the embedded milvus-lite file, both collections)

**Writes are transactions.** ``add`` and ``remove`` change the open store in memory; ``commit``
(which ``add``/``remove`` call unless given ``commit=False``) takes the write lock, checks that no
other writer committed since this store was opened, writes a new generation of every file,
fsyncs it, then replaces ``manifest.json`` atomically; only then are the previous generation's
files deleted. A writer killed at any line leaves the manifest naming the previous generation's
complete, checksummed files (the next commit removes the leftovers), and ``cmhash index add``
run again completes the job (items already present with the same codes are skipped). ``create``
commits nothing until its first commit, so ``index build --overwrite`` keeps the previous index
until the new one is complete.

**Readers never see a writer.** Generation files are never changed once written; ``open`` maps
the index files read-only (``load_index(mmap=True)``: pages are read when a search touches them,
so a 10M-item store opens in well under a second) and keeps one read-only SQLite connection to its
generation's items file; both stay readable after a writer deletes the files (POSIX).

**What is checked when.** Every open checks the manifest, each file's size and each index file's
header. The sha256 of every file is computed when a commit writes it, and checked again at open
when the generation is small (``VERIFY_AT_OPEN_BYTES``, a fraction of a second), or when asked
(``open(verify=True)``, ``cmhash index info --verify``); a large store opens without reading its
files whole. ``changed()`` says when a newer
generation was committed; the service then opens it and switches.

The package: ``files`` (the manifest, generation files, checksums, leftovers), ``catalogue``
(the items' SQLite files), ``planning`` (exact or approximate per query direction, from what the
backend declares) and ``store`` (``IndexStore``, the transactions over them). A backend's own
store-side needs (e.g. Milvus's database file) are its class's ``store_options`` / ``store_files``
(``base.HammingIndex``): no backend is named here.

Item ``source`` paths are stored relative to a root folder (the encoded collection's folder, in
``manifest["roots"]``); ``source_path`` gives the file only when it lies inside that root.
"""
from .catalogue import Catalogue
from .files import FORMAT, LOCK_NAME, MODALITIES, StoreError, read_manifest, sha256_file
from .store import IndexStore

__all__ = ["Catalogue", "FORMAT", "IndexStore", "LOCK_NAME", "MODALITIES", "StoreError", "read_manifest",
           "sha256_file"]
