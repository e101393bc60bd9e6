"""Image folders: PNG and JPEG files, decoded with Pillow in Ray tasks, resized to one (C, H, W) shape.

The id is the file's path relative to the root; the label (optional) is the name of its parent folder.
A file Pillow cannot decode (truncated, or not an image) becomes an error record naming it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import ray.data
from PIL import Image, UnidentifiedImageError

from pipelines.config import DataConfig
from pipelines.data.files import list_files, open_file, relative_names
from pipelines.data.records import Batch, make_records, read_in_tasks

SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGES_PER_TASK = 128
MODES = {"grayscale": "L", "rgb": "RGB"}


def sample_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """``(C, H, W)`` of every image after conversion and resizing."""
    h, w = cfg.image_size
    return (1 if cfg.color_mode == "grayscale" else 3, h, w)


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
    shape = sample_shape(cfg)
    n = len(items["path"])
    x, errors = np.zeros((n, *shape), np.float32), np.full(n, "", dtype=object)
    for i, path in enumerate(items["path"]):
        try:
            x[i] = decode(path, cfg)
        except UnidentifiedImageError:
            errors[i] = "not a readable image (Pillow cannot identify it as PNG or JPEG)"
        except Exception as exc:
            errors[i] = f"not a readable image ({type(exc).__name__}: {exc})"
    names = items["name"]
    labels = None
    if cfg.label_from_folder:
        labels = np.array([nm.rsplit("/", 2)[-2] if "/" in nm else None for nm in names], dtype=object)
    yield make_records(names, x, errors, items["path"], np.full(n, -1), labels)


def read_image_records(
    path: str, cfg: DataConfig, root: str, only: tuple[str, ...] | None = None
) -> tuple[ray.data.Dataset, tuple[int, ...]]:
    """Records of every image under ``path`` (or of the image files ``only``: one scoring shard) and the sample
    shape ``(C, H, W)``; ids are paths relative to ``root``."""
    files = list(only) if only is not None else list_files(path, SUFFIXES)
    items = [{"path": f, "name": n} for f, n in zip(files, relative_names(files, root), strict=True)]
    return read_in_tasks(items, _records, {"cfg": cfg}, per_task=IMAGES_PER_TASK), sample_shape(cfg)
