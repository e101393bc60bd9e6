"""One storage layer: every path aepipe reads or writes is a string that may be a URI.

Local paths, ``file://``, ``s3://`` and ``gs://`` map to a ``pyarrow.fs`` filesystem (schemes pyarrow lacks go
through fsspec, when it is installed with a driver for them); everything else in aepipe (corpus listing,
checkpoints, quarantine, scoring output, markers, manifests) reads and writes through the helpers here, so
they behave the same on a laptop's disk and on object storage. Object stores have no rename: :func:`write_bytes`
is one PUT there (all or nothing), and a temporary file moved into place on a local disk.

``pathlib`` is never put around a path that may be a URI: ``Path("s3://b/k")`` is the local ``s3:/b/k``.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs


class StorageError(ValueError):
    """A path or URI that cannot be used (unknown scheme, missing bucket, refused credentials, unreachable
    endpoint), with the path in the message."""


def is_uri(path: str) -> bool:
    return "://" in path


def _scheme(path: str) -> str:
    return path.split("://", 1)[0].lower() if is_uri(path) else ""


def _fsspec_filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """A scheme pyarrow has no native filesystem for, through fsspec (``hdfs``, ``abfs``, ``memory`` ...)."""
    try:
        import fsspec
        from fsspec.core import url_to_fs

        fs, inner = url_to_fs(path)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"{path}: unknown storage scheme {_scheme(path)!r} ({exc})") from None
    assert isinstance(fs, fsspec.AbstractFileSystem)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), inner


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path on it)``; a local path becomes absolute (tasks may run in another directory).

    Raises:
        StorageError: an unknown scheme or a URI without a bucket.
    """
    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    if _scheme(path) == "file":
        return pafs.LocalFileSystem(), os.path.abspath(path.split("://", 1)[1])
    if _scheme(path) in ("s3", "gs", "gcs") and not path.split("://", 1)[1].strip("/"):
        raise StorageError(f"{path}: the URI names no bucket (write {_scheme(path)}://BUCKET/PREFIX)")
    try:
        return pafs.FileSystem.from_uri(path)
    except pa.ArrowInvalid as exc:
        if "Unrecognized filesystem type" in str(exc):
            return _fsspec_filesystem(path)
        raise StorageError(f"{path}: {exc}") from None
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"{path}: cannot open the storage ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """The first line of a storage error, without pyarrow's boilerplate."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("When getting information for key", "getting").strip()


def normalize(path: str) -> str:
    """One spelling per location: a local path made absolute, a URI without a trailing slash."""
    return path.rstrip("/") if is_uri(path) else os.path.abspath(path)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` keeping a URI's scheme (``os.path.join`` for a local path)."""
    if not is_uri(base):
        return os.path.join(base, *parts)
    return posixpath.join(base.rstrip("/"), *(p.strip("/") for p in parts))


def parent(path: str) -> str:
    """The directory holding ``path`` (same scheme)."""
    if not is_uri(path):
        return os.path.dirname(os.path.abspath(path))
    scheme, inner = path.split("://", 1)
    return f"{scheme}://{posixpath.dirname(inner.rstrip('/'))}"


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_uri(path) else os.path.basename(path.rstrip(os.sep))


def info(path: str) -> pafs.FileInfo:
    """The file info of ``path`` (type ``NotFound`` when absent); errors name the path and why."""
    fs, inner = resolve(path)
    try:
        return fs.get_file_info(inner)
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"{path}: {_reason(exc)}") from None


def is_file(path: str) -> bool:
    return info(path).type == pafs.FileType.File


def is_dir(path: str) -> bool:
    return info(path).type == pafs.FileType.Directory


def check_reachable(path: str) -> None:
    """Fail before any work when ``path``'s store cannot be reached: the bucket is missing, the credentials
    are refused or the endpoint does not answer. A missing key or directory under a reachable bucket is fine
    (outputs are created); local paths always pass."""
    if not is_uri(path) or _scheme(path) == "file":
        return
    fs, inner = resolve(path)
    bucket = inner.split("/", 1)[0]
    try:
        found = fs.get_file_info(bucket)
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"{path}: cannot reach the storage ({_reason(exc)})") from None
    if found.type == pafs.FileType.NotFound:
        raise StorageError(f"{path}: bucket {bucket!r} does not exist")


def list_dir(path: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """Entries under the directory ``path`` (empty when it does not exist)."""
    fs, inner = resolve(path)
    try:
        return list(fs.get_file_info(pafs.FileSelector(inner, recursive=recursive, allow_not_found=True)))
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"{path}: cannot list it ({_reason(exc)})") from None


def uri_of(path: str, entry: pafs.FileInfo) -> str:
    """The full path (same scheme as ``path``) of an entry :func:`list_dir` returned."""
    return f"{_scheme(path)}://{entry.path}" if is_uri(path) else entry.path


def make_dirs(path: str) -> None:
    """Create the directory ``path`` and its parents (a no-op on object stores, which have no directories)."""
    fs, inner = resolve(path)
    fs.create_dir(inner, recursive=True)


def read_bytes(path: str) -> bytes:
    fs, inner = resolve(path)
    with fs.open_input_stream(inner) as fh:
        return bytes(fh.read())


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: one PUT on an object store; on a local disk a temporary file
    beside it, fsynced, then renamed over ``path``."""
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(inner), exist_ok=True)
        tmp = f"{os.path.dirname(inner)}/.{os.path.basename(inner)}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, inner)
        return
    with fs.open_output_stream(inner) as out:
        out.write(data)


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def write_json(path: str, payload: Any) -> None:
    write_bytes(path, json.dumps(payload, indent=1, sort_keys=True).encode())


def open_input(path: str) -> pa.NativeFile:
    """A seekable binary file (what Parquet and Pillow read)."""
    fs, inner = resolve(path)
    return fs.open_input_file(inner)


def open_output(path: str) -> pa.NativeFile:
    """A binary output stream; on an object store the object appears when the stream is closed."""
    fs, inner = resolve(path)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(inner), exist_ok=True)
    return fs.open_output_stream(inner)


def delete_file(path: str, missing_ok: bool = True) -> None:
    fs, inner = resolve(path)
    try:
        fs.delete_file(inner)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_dir(path: str) -> None:
    """Delete the directory (or key prefix) ``path`` and everything under it; absent is fine."""
    fs, inner = resolve(path)
    if fs.get_file_info(inner).type != pafs.FileType.NotFound:
        fs.delete_dir(inner)
