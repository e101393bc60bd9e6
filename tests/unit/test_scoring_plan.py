"""How an image folder is cut into scoring shards (pipelines/score/plan.py), no Ray: by folder, in chunks of a
fixed size, each named by the files it holds, so new files make new shards and leave the old ones alone."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.score import inputs, publish
from pipelines.score.inputs import HeldFiles
from pipelines.score.plan import image_shards

IDENTITY = {"model_name": "m", "model_version": "1", "mode": "score"}


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())  # sizes differ by name: only the listing is read here


def _layout(shards) -> list[tuple[str, list[str]]]:
    return [(s.name, [i[0] for i in s.files.inputs()]) for s in shards]


def test_an_image_folder_is_sharded_by_folder_then_in_chunks_of_sorted_files(tmp_path):
    _touch(tmp_path, *(f"flat-{i:02d}.png" for i in range(5)), "2024-06-01/a.png", "2024-06-01/b.jpg", "notes.txt")
    shards = image_shards(str(tmp_path), per_shard=2)
    assert [files for _, files in _layout(shards)] == [
        ["flat-00.png", "flat-01.png"],
        ["flat-02.png", "flat-03.png"],
        ["flat-04.png"],
        ["2024-06-01/a.png", "2024-06-01/b.jpg"],
    ]
    assert shards[3].name.startswith("2024-06-01/a-n2-") and shards[0].name.startswith("flat-00-n2-")
    assert [s.rows for s in shards] == [2, 2, 1, 2]
    assert shards[3].files.paths() == [str(tmp_path / "2024-06-01/a.png"), str(tmp_path / "2024-06-01/b.jpg")]
    assert shards[3].size == sum(os.path.getsize(f) for f in shards[3].files.paths())


def test_new_folders_leave_every_shard_as_it_was_and_a_changed_file_renames_its_chunk(tmp_path):
    _touch(tmp_path, *(f"day-1/img-{i:02d}.png" for i in range(5)))
    before = image_shards(str(tmp_path), per_shard=2)
    _touch(tmp_path, *(f"day-2/img-{i:02d}.png" for i in range(3)))
    after = image_shards(str(tmp_path), per_shard=2)
    assert after[: len(before)] == before and len(after) == len(before) + 2

    os.utime(tmp_path / "day-1/img-02.png", ns=(1, 1))
    touched = image_shards(str(tmp_path), per_shard=2)
    assert [s.name == b.name for s, b in zip(touched, before, strict=False)] == [True, False, True]


def test_a_file_added_inside_a_chunked_folder_shifts_later_chunks_but_held_files_are_left_out(tmp_path):
    _touch(tmp_path, *(f"img-{i:02d}.png" for i in (0, 1, 2, 4, 5)))
    before = image_shards(str(tmp_path), per_shard=2)
    _touch(tmp_path, "img-03.png")
    after = image_shards(str(tmp_path), per_shard=2)
    # a full run scores the chunks from the new file on again, under new names (documented)
    assert after[0] == before[0] and {s.name for s in after[1:]}.isdisjoint(s.name for s in before)
    # an incremental run plans only the files no partition holds: the new one, alone
    held = {i for s in before for i in s.files.inputs()}
    assert _layout(image_shards(str(tmp_path), per_shard=2, held=lambda _folder: held))[0][1] == ["img-03.png"]
    held.add(after[1].files.inputs()[1])
    assert image_shards(str(tmp_path), per_shard=2, held=lambda _folder: held) == []


def test_image_shards_index_their_files_which_planning_reads_back_folder_by_folder(tmp_path):
    """The manifest names each image shard's input index (one small Parquet file in the partition) instead of
    listing its files; an incremental plan reads the indexes of one folder at a time, old inline lists too."""
    inp, part = tmp_path / "in", str(tmp_path / "out")
    _touch(inp, *(f"day-1/img-{i:02d}.png" for i in range(3)), "day-2/img-00.png")
    shards = image_shards(str(inp), per_shard=2)
    assert not publish.read_marker(part, shards[0], IDENTITY)
    for shard in shards[:2]:
        inputs.write_index(part, shard)
    held = HeldFiles()
    held.add(part, [s.entry for s in shards[:2]])
    assert held.in_folder("day-1") == set(shards[0].files.inputs() + shards[1].files.inputs())
    assert held.in_folder("day-2") == set()
    legacy = {**shards[2].fingerprint, "inputs": [list(k) for k in shards[2].files.inputs()]}  # format /2
    held.add(part, [legacy, {"name": "part-00000.parquet"}])
    assert held.in_folder("day-2") == set(shards[2].files.inputs())
    assert image_shards(str(inp), per_shard=2, held=held.in_folder) == []

    publish.write_marker(part, IDENTITY, {**shards[0].entry, **IDENTITY, "files": []})
    assert publish.read_marker(part, shards[0], IDENTITY) is not None
    os.remove(os.path.join(part, shards[0].entry["input_index"]))
    assert publish.read_marker(part, shards[0], IDENTITY) is None  # its index is gone: scored again
    swept = publish.sweep(part, "aaaaaaaaaaaa", IDENTITY, set())
    assert swept == [shards[1].entry["input_index"]]  # an index the new manifest does not list
