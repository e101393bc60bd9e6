"""Folder-by-folder listing and compact file chunks (pipelines/data/chunks.py), no Ray: what a scoring plan over a
large image folder holds instead of one object per file."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pipelines.data.chunks import ChunkIndex, FileChunk, iter_folders
from pipelines.data.errors import DataError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def test_folders_are_listed_one_at_a_time_files_sorted_then_sub_folders_depth_first(tmp_path):
    _touch(tmp_path, "b.png", "a.PNG", "_hidden.png", "notes.txt", "sub/x.png", "sub/deeper/y.jpg", "other/z.png")
    chunks = list(iter_folders(str(tmp_path), (".png", ".jpg")))
    assert [(c.prefix, c.base_names()) for c in chunks] == [
        ("", ["a.PNG", "b.png"]),
        ("other", ["z.png"]),
        ("sub", ["x.png"]),
        ("sub/deeper", ["y.jpg"]),
    ]
    deeper = chunks[3]
    stat = os.stat(tmp_path / "sub/deeper/y.jpg")
    assert deeper.paths() == [str(tmp_path / "sub/deeper/y.jpg")]
    assert deeper.inputs() == [("sub/deeper/y.jpg", stat.st_size, stat.st_mtime_ns)]
    single = list(iter_folders(str(tmp_path / "sub/x.png"), (".png",)))
    assert [(c.paths(), c.relative_names()) for c in single] == [([str(tmp_path / "sub/x.png")], ["x.png"])]
    with pytest.raises(DataError, match="does not exist"):
        list(iter_folders(str(tmp_path / "missing"), (".png",)))
    with pytest.raises(DataError, match=r"has no \.gif files"):
        list(iter_folders(str(tmp_path), (".gif",)))


def test_a_chunk_splits_leaves_out_held_files_and_an_index_finds_each_file_s_chunk(tmp_path):
    _touch(tmp_path, *(f"day/img-{i}.png" for i in range(5)), "other/img-0.png")
    day, other = iter_folders(str(tmp_path), (".png",))
    parts = list(day.split(2))
    assert [p.base_names() for p in parts] == [["img-0.png", "img-1.png"], ["img-2.png", "img-3.png"], ["img-4.png"]]
    assert [p.inputs() for p in parts] == [day.inputs()[:2], day.inputs()[2:4], day.inputs()[4:]]
    kept = day.without({day.inputs()[1], day.inputs()[3]})
    assert kept.base_names() == ["img-0.png", "img-2.png", "img-4.png"] and len(kept) == 3
    assert kept.inputs() == [day.inputs()[k] for k in (0, 2, 4)]

    index = ChunkIndex([parts[2], other, parts[0]])
    assert [index[p] for p in day.paths()[:2] + day.paths()[4:] + other.paths()] == [2, 2, 0, 1]
    with pytest.raises(KeyError):
        index[day.paths()[2]]  # a file of a chunk not indexed

    files = day.paths() + other.paths()  # a whole listing as one chunk: names keep their sub-folders
    listing = FileChunk.listed(
        files, [f[len(str(tmp_path)) + 1 :] for f in files], pafs.LocalFileSystem().get_file_info(files)
    )
    assert listing.folder == str(tmp_path) and listing.paths() == files
    assert listing.inputs() == day.inputs() + other.inputs()
