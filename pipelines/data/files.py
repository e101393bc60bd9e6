"""Listing and opening the files of a corpus on any pyarrow filesystem (local, file://, s3://, gs://)."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.fs as pafs

from pipelines import storage
from pipelines.data.errors import DataError


def open_file(path: str) -> pa.NativeFile:
    """A seekable binary file for a local path or URI (what Parquet and Pillow read)."""
    return storage.open_input(path)


def _listing(path: str) -> tuple[str, list[pafs.FileInfo] | None]:
    """``(root on its filesystem, the files under it)``: every file, recursively, whose name does not start with
    ``_`` or ``.`` (markers, manifests, hidden files); None when ``path`` is a file.

    Raises :class:`DataError` for a missing path.
    """
    fs, root = storage.resolve(path)  # a local root made absolute: tasks may run in another directory
    info = storage.info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input path {path} does not exist")
    if info.type == pafs.FileType.File:
        return root, None
    listed = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return root, [f for f in listed if f.type == pafs.FileType.File and not f.base_name.startswith(("_", "."))]


def list_file_infos(path: str, suffixes: tuple[str, ...]) -> list[tuple[str, pafs.FileInfo]]:
    """Sorted ``(path, info)`` of the files under ``path`` (recursively) whose names end in one of ``suffixes``:
    size and modification time (on object storage the object's Last-Modified) come with the one listing.

    Returned paths keep the URI scheme, so tasks read them from the same filesystem.
    Raises :class:`DataError` for a missing path or a directory with no matching files.
    """
    root, infos = _listing(path)
    if infos is None:
        return [(path if "://" in path else root, storage.info(path))]
    found = sorted((f for f in infos if f.path.lower().endswith(suffixes)), key=lambda f: f.path)
    if not found:
        raise DataError(f"input directory {path} has no {'/'.join(suffixes)} files")
    prefix = path[: path.index("://") + 3] if "://" in path else ""
    return [(prefix + f.path, f) for f in found]


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted files under ``path`` (recursively) whose names end in one of ``suffixes`` (see
    :func:`list_file_infos`)."""
    return [p for p, _ in list_file_infos(path, suffixes)]


def corpus_fingerprint(path: str) -> str:
    """A SHA-256 hex digest of what lies under the corpus root ``path``: each file's name relative to the root,
    size and modification time (ns), in name order.

    Covers every file a reader could take (:func:`_listing`), whatever its suffix. Any file added, removed,
    renamed or rewritten changes it; moving the whole corpus to another root with its times kept does not.
    pyarrow.fs reports no ETags; on object storage the modification time is the object's Last-Modified, which
    every upload renews. Raises :class:`DataError` for a missing path.
    """
    root, infos = _listing(path)
    if infos is None:  # a single file: its base name
        info = storage.info(path)
        entries = [(info.base_name, info.size, info.mtime_ns)]
    else:
        prefix = root.rstrip("/") + "/"
        entries = sorted((f.path.removeprefix(prefix), f.size, f.mtime_ns) for f in infos)
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def relative_names(files: list[str], path: str) -> list[str]:
    """Each file's path relative to the corpus root ``path`` ("/"-separated); a single file keeps its base name."""
    root = storage.resolve(path)[1].rstrip("/") + "/"
    out = []
    for f in files:
        inner = storage.resolve(f)[1]
        out.append(inner[len(root) :] if inner.startswith(root) else inner.rsplit("/", 1)[-1])
    return out
