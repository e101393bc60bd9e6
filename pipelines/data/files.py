"""Listing the files of a corpus on any pyarrow filesystem (local, s3://, gs://)."""

from __future__ import annotations

import pyarrow.fs as pafs

from pipelines.data.errors import DataError


def list_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted files under ``path`` (recursively) whose names end in one of ``suffixes``.

    Returned paths keep the URI scheme, so Ray Data reads them from the same filesystem.
    Raises :class:`DataError` for a missing path or a directory with no matching files.
    """
    fs, root = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input path {path} does not exist")
    if info.type == pafs.FileType.File:
        return [path]
    selector = pafs.FileSelector(root, recursive=True)
    names = sorted(
        f.path for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.path.lower().endswith(suffixes) and not f.base_name.startswith(("_", "."))
    )
    if not names:
        raise DataError(f"input directory {path} has no {'/'.join(suffixes)} files")
    prefix = path[: path.index("://") + 3] if "://" in path else ""
    return [prefix + n for n in names]
