"""Files of one folder held compactly, and folder-by-folder listing: a scoring plan or pass over a folder of
100,000 images holds its file names as a few strings and integer buffers, not as 100,000 Python objects.

A :class:`FileChunk` is some files of one folder: the folder (a path or URI), its name relative to the corpus root,
the base names joined by newlines, and sizes and modification times as int64 bytes. :func:`iter_folders` lists a
corpus one folder at a time (sorted), so the driver never holds the whole listing; :class:`ChunkIndex` finds the
chunk that holds a file path.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs

from pipelines import storage
from pipelines.data.errors import DataError

#: One input file as (name relative to the corpus root, size, mtime_ns).
InputKey = tuple[str, int, int]


def _int64(values: Iterable[int | None]) -> bytes:
    return np.fromiter((int(v or 0) for v in values), np.int64).tobytes()


@dataclass(frozen=True)
class FileChunk:
    """Files of one folder, in name order."""

    folder: str
    """The folder's path or URI: a file's path is ``folder/name`` (a name may hold sub-folders: :meth:`listed`)."""
    prefix: str
    """The folder relative to the corpus root ("" for the root itself)."""
    names: str
    """Base names joined by newlines."""
    sizes: bytes
    """Sizes, int64 [N]."""
    mtimes: bytes
    """Modification times (ns), int64 [N]."""

    @classmethod
    def of(cls, folder: str, prefix: str, infos: Sequence[pafs.FileInfo]) -> FileChunk:
        """The chunk of the listed files ``infos`` (of ``folder``, in the order given)."""
        return cls(
            folder,
            prefix,
            "\n".join(f.base_name for f in infos),
            _int64(f.size for f in infos),
            _int64(f.mtime_ns for f in infos),
        )

    @classmethod
    def listed(cls, files: Sequence[str], names: Sequence[str], infos: Sequence[pafs.FileInfo]) -> FileChunk:
        """One chunk of a whole listing: ``files`` (paths or URIs) named ``names`` relative to the corpus root,
        which may hold sub-folders (the chunk's folder is then the root)."""
        root = files[0][: len(files[0]) - len(names[0]) - 1] if files else ""
        return cls(root, "", "\n".join(names), _int64(f.size for f in infos), _int64(f.mtime_ns for f in infos))

    def __len__(self) -> int:
        return len(self.sizes) // 8

    def base_names(self) -> list[str]:
        return self.names.split("\n") if self.names else []

    @property
    def first(self) -> str:
        return self.names.partition("\n")[0]

    @property
    def last(self) -> str:
        return self.names.rpartition("\n")[2]

    def paths(self) -> list[str]:
        """Each file's path or URI, as the corpus listing spells it."""
        return [f"{self.folder}/{n}" for n in self.base_names()]

    def relative_names(self) -> list[str]:
        """Each file's name relative to the corpus root (an image's id)."""
        return [f"{self.prefix}/{n}" if self.prefix else n for n in self.base_names()]

    def size_array(self) -> np.ndarray:
        return np.frombuffer(self.sizes, np.int64)

    def mtime_array(self) -> np.ndarray:
        return np.frombuffer(self.mtimes, np.int64)

    def inputs(self) -> list[InputKey]:
        """Each file as (name relative to the root, size, mtime_ns)."""
        return list(zip(self.relative_names(), self.size_array().tolist(), self.mtime_array().tolist(), strict=True))

    def _select(self, keep: np.ndarray) -> FileChunk:
        names = self.base_names()
        return FileChunk(
            self.folder,
            self.prefix,
            "\n".join(n for n, k in zip(names, keep, strict=True) if k),
            self.size_array()[keep].tobytes(),
            self.mtime_array()[keep].tobytes(),
        )

    def without(self, held: Iterable[InputKey] | set[InputKey]) -> FileChunk:
        """The chunk less the files in ``held`` (by name, size and mtime)."""
        held = held if isinstance(held, set | frozenset) else set(held)
        if not held:
            return self
        return self._select(np.asarray([key not in held for key in self.inputs()], bool))

    def split(self, size: int) -> Iterator[FileChunk]:
        """Consecutive chunks of at most ``size`` files."""
        if len(self) <= size:
            if len(self):
                yield self
            return
        names, sizes, mtimes = self.base_names(), self.size_array(), self.mtime_array()
        for k in range(0, len(names), size):
            part = slice(k, k + size)
            yield FileChunk(
                self.folder, self.prefix, "\n".join(names[part]), sizes[part].tobytes(), mtimes[part].tobytes()
            )


def single_file(path: str, name: str, info: pafs.FileInfo) -> FileChunk:
    """The chunk of one listed file ``path`` whose name relative to the corpus root is ``name``."""
    return FileChunk.of(path.rpartition("/")[0], name.rpartition("/")[0], [info])


def _scheme(path: str) -> str:
    return path[: path.index("://") + 3] if "://" in path else ""


def _wanted(info: pafs.FileInfo, suffixes: tuple[str, ...]) -> bool:
    """A file a reader takes: not hidden (``_`` or ``.``, markers and manifests) and with one of ``suffixes``."""
    return (
        info.type == pafs.FileType.File
        and not info.base_name.startswith(("_", "."))
        and info.base_name.lower().endswith(suffixes)
    )


def iter_folders(path: str, suffixes: tuple[str, ...]) -> Iterator[FileChunk]:
    """One chunk per folder under ``path`` that holds files ending in ``suffixes``: a folder's own files (sorted),
    then its sub-folders (sorted, depth first), each listed on its own; a single file is a chunk of one.

    Raises :class:`DataError` for a missing path or (once the listing is done) a folder with no such files."""
    fs, root = storage.resolve(path)
    info = storage.info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input path {path} does not exist")
    scheme = _scheme(path)
    if info.type == pafs.FileType.File:
        yield FileChunk.of(scheme + root.rpartition("/")[0], "", [info])
        return
    root, found, pending = root.rstrip("/"), False, [""]
    while pending:
        prefix = pending.pop()
        inner = f"{root}/{prefix}" if prefix else root
        listed = fs.get_file_info(pafs.FileSelector(inner))
        files = sorted((f for f in listed if _wanted(f, suffixes)), key=lambda f: f.base_name)
        subfolders = sorted(f.base_name for f in listed if f.type == pafs.FileType.Directory)
        pending += [f"{prefix}/{d}" if prefix else d for d in reversed(subfolders)]
        if files:
            found = True
            yield FileChunk.of(scheme + inner, prefix, files)
    if not found:
        raise DataError(f"input directory {path} has no {'/'.join(suffixes)} files")


class ChunkIndex:
    """Which of some chunks (of disjoint name ranges per folder) holds a file path; small to ship to tasks: per
    folder, the chunks' first and last names."""

    def __init__(self, chunks: Sequence[FileChunk]) -> None:
        spans: dict[str, list[tuple[str, str, int]]] = {}
        for i, chunk in enumerate(chunks):
            spans.setdefault(chunk.folder, []).append((chunk.first, chunk.last, i))
        self.spans = {folder: sorted(found) for folder, found in spans.items()}
        self.firsts = {folder: [s[0] for s in found] for folder, found in self.spans.items()}

    def __getitem__(self, path: str) -> int:
        folder, _, name = path.rpartition("/")
        k = bisect.bisect_right(self.firsts.get(folder, []), name) - 1
        if k >= 0 and name <= self.spans[folder][k][1]:
            return self.spans[folder][k][2]
        raise KeyError(path)
