"""Listing and opening the files of a corpus on any pyarrow filesystem (local, file://, s3://, gs://)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs

from pipelines import storage
from pipelines.data.errors import DataError


def open_file(path: str) -> pa.NativeFile:
    """A seekable binary file for a local path or URI (what Parquet and Pillow read)."""
    return storage.open_input(path)


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted files under ``path`` (recursively) whose names end in one of ``suffixes``.

    Returned paths keep the URI scheme, so tasks read them from the same filesystem.
    Raises :class:`DataError` for a missing path or a directory with no matching files.
    """
    fs, root = storage.resolve(path)  # a local root made absolute: tasks may run in another directory
    info = storage.info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input path {path} does not exist")
    if info.type == pafs.FileType.File:
        return [path if "://" in path else root]
    selector = pafs.FileSelector(root, recursive=True)
    names = sorted(
        f.path
        for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.path.lower().endswith(suffixes) and not f.base_name.startswith(("_", "."))
    )
    if not names:
        raise DataError(f"input directory {path} has no {'/'.join(suffixes)} files")
    prefix = path[: path.index("://") + 3] if "://" in path else ""
    return [prefix + n for n in names]


def relative_names(files: list[str], path: str) -> list[str]:
    """Each file's path relative to the corpus root ``path`` ("/"-separated); a single file keeps its base name."""
    root = storage.resolve(path)[1].rstrip("/") + "/"
    out = []
    for f in files:
        inner = storage.resolve(f)[1]
        out.append(inner[len(root) :] if inner.startswith(root) else inner.rsplit("/", 1)[-1])
    return out
