"""Image folders: PNG and JPEG files, decoded with Pillow in Ray tasks, resized to one (C, H, W) shape.

The id is the file's path relative to the root; the label (optional) is the name of its parent folder.
A file Pillow cannot decode (truncated, or not an image) becomes an error record naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import ray.data
from PIL import Image, UnidentifiedImageError

from pipelines.config import DataConfig
from pipelines.data.chunks import FileChunk
from pipelines.data.files import list_file_infos, open_file, relative_names
from pipelines.data.records import Batch, make_records, read_in_tasks

SUFFIXES = (".png", ".jpg", ".jpeg")
#: Decoded pixels (float32 bytes) one read task yields at most, as one block: far under Ray Data's 128 MiB block
#: target, and for small images well over the 100 KiB below which a block is held on the driver's heap.
TASK_BYTES = 4 * 2**20
#: Files one read task decodes at most: a shard of tiny images is one task. Ray Data's driver-side bookkeeping
#: grows with the tasks (8x8 PNGs at 128 per task: +17 MiB of driver peak in the validation pass at 100,000).
MAX_IMAGES_PER_TASK = 1024
MODES = {"grayscale": "L", "rgb": "RGB"}


def sample_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """``(C, H, W)`` of every image after conversion and resizing."""
    h, w = cfg.image_size
    return (1 if cfg.color_mode == "grayscale" else 3, h, w)


def images_per_task(cfg: DataConfig) -> int:
    """Files per read task: :data:`TASK_BYTES` of decoded pixels, at most :data:`MAX_IMAGES_PER_TASK`."""
    return max(1, min(MAX_IMAGES_PER_TASK, TASK_BYTES // (4 * int(np.prod(sample_shape(cfg))))))


def decode(path: str, cfg: DataConfig) -> np.ndarray:
    """One image file -> ``[C, H, W]`` float32 pixels in 0..255 (raises on an undecodable file)."""
    with open_file(path) as f, Image.open(f) as opened:
        opened.load()  # decode now: a truncated file fails here, not later
        image = opened.convert(MODES[cfg.color_mode])
        h, w = cfg.image_size
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _records(items: Batch, cfg: DataConfig) -> Iterator[Batch]:
    """Decode the files of each item (one task's share of a :class:`FileChunk`: folder, prefix, joined names)."""
    shape = sample_shape(cfg)
    for folder, prefix, joined in zip(items["folder"], items["prefix"], items["names"], strict=True):
        base = str(joined).split("\n")
        paths = [f"{folder}/{n}" for n in base]
        names = np.array([f"{prefix}/{n}" if prefix else n for n in base], dtype=object)
        x, errors = np.zeros((len(base), *shape), np.float32), np.full(len(base), "", dtype=object)
        for i, path in enumerate(paths):
            try:
                x[i] = decode(path, cfg)
            except UnidentifiedImageError:
                errors[i] = "not a readable image (Pillow cannot identify it as PNG or JPEG)"
            except Exception as exc:
                errors[i] = f"not a readable image ({type(exc).__name__}: {exc})"
        labels = None
        if cfg.label_from_folder:
            labels = np.array([nm.rsplit("/", 2)[-2] if "/" in nm else None for nm in names], dtype=object)
        yield make_records(names, x, errors, np.array(paths, dtype=object), np.full(len(base), -1), labels)


def _listed_chunks(path: str, root: str) -> list[FileChunk]:
    """Every image under ``path`` as one chunk named relative to ``root``, in sorted path order (so one read task's
    files may span folders, as before the chunks)."""
    listed = list_file_infos(path, SUFFIXES)
    files = [f for f, _ in listed]
    return [FileChunk.listed(files, relative_names(files, root), [info for _, info in listed])]


def read_image_records(
    path: str, cfg: DataConfig, root: str, only: Sequence[FileChunk] | None = None
) -> tuple[ray.data.Dataset, tuple[int, ...]]:
    """Records of every image under ``path`` (or of the chunks ``only``: a scoring pass's shards) and the sample
    shape ``(C, H, W)``; ids are paths relative to ``root`` (the chunks' prefixes are). One read task decodes
    up to :func:`images_per_task` files of one chunk, named in one string: the driver holds no object per file."""
    chunks = list(only) if only is not None else _listed_chunks(path, root)
    items = [
        {"folder": part.folder, "prefix": part.prefix, "names": part.names}
        for chunk in chunks
        for part in chunk.split(images_per_task(cfg))
    ]
    return read_in_tasks(items, _records, {"cfg": cfg}), sample_shape(cfg)
