"""ImageNet-style datasets: find the images, split calibration from evaluation, load batches.

Labels follow timm and torchvision: a class folder is named by its WordNet id, and its index
is the position of that id in the sorted list of the 1000 ImageNet-1k ids.
"""

import dataclasses
import logging
import random
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform

from qaccelx.errors import InputError
from qaccelx.progress import StageProgress

__all__ = [
    "CALIBRATION_FILE",
    "DatasetIndex",
    "ImageRecord",
    "build_transform",
    "index_dataset",
    "iterate_batches",
    "load_calibration_set",
    "manifest_digest",
    "save_calibration_set",
    "split_calibration",
]

logger = logging.getLogger(__name__)

# The calibration entry's one file: preprocessed images and their labels.
CALIBRATION_FILE = "calibration.npz"

# File endings PIL reads that ImageNet copies use; compared lower-case.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of the dataset, with what the manifest needs to notice a change."""

    path: str  # relative to the dataset root
    label: int  # ImageNet-1k class index
    size: int  # bytes
    mtime_ns: int  # modification time


@dataclasses.dataclass(frozen=True)
class DatasetIndex:
    """The images of a dataset root, by split."""

    root: str  # absolute dataset root
    val: tuple[ImageRecord, ...]  # evaluation images (and calibration when there is no train)
    train: tuple[ImageRecord, ...]  # calibration pool when present, else empty
    num_classes: int  # class folders found in the evaluation split


def index_dataset(dataset_path: str) -> DatasetIndex:
    """List the images of an ImageNet root (``val/``, optional ``train/``) or of class folders.

    Args:
        dataset_path: The dataset root as the user gave it.

    Returns:
        The images of each split, labelled by their class folder.

    Raises:
        InputError: the path is missing, holds no images in class folders, has ``train/``
            but no ``val/``, or its folders are not ImageNet WordNet ids.
    """
    root = Path(dataset_path).expanduser().resolve()
    if not root.is_dir():
        raise InputError(
            f"--dataset_path {dataset_path!r} does not exist: give an ImageNet root with val/ "
            "(and optionally train/) in the ImageFolder layout, or a folder of class folders"
        )
    has_val = (root / "val").is_dir()
    if not has_val and (root / "train").is_dir():
        raise InputError(
            f"--dataset_path {dataset_path!r} has train/ but no val/: accuracy is measured on "
            "val/<wnid>/<image>.JPEG, so add the validation images there"
        )
    val_dir = root / "val" if has_val else root
    val = _index_split(root, val_dir)
    train = _index_split(root, root / "train") if (root / "train").is_dir() else ()
    if not val:
        raise InputError(f"--dataset_path {dataset_path!r} {_describe_no_images(val_dir)}")

    num_classes = len({record.label for record in val})
    if num_classes < len(ImageNetInfo().label_names()):
        logger.warning(
            "%s has %d of the 1000 ImageNet classes: accuracy is over those classes only",
            val_dir,
            num_classes,
        )
    return DatasetIndex(str(root), val, train, num_classes)


def _describe_no_images(split_dir: Path) -> str:
    # Say what is there instead: loose images want class folders, anything else a real copy.
    loose = [p for p in split_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    layout = "<wnid>/<image>.JPEG folders such as val/n01440764/ILSVRC2012_val_00000293.JPEG"
    if loose:
        return (
            f"has {len(loose)} image(s) directly in {split_dir} but no class folders: put "
            f"them in {layout}"
        )
    return f"holds no images under {split_dir}: expected {layout}"


def manifest_digest(records: tuple[ImageRecord, ...] | list[ImageRecord]) -> str:
    """Hash of relative paths, sizes and modification times: changes when any image does."""
    return joblib.hash([dataclasses.astuple(record) for record in records])


def split_calibration(
    index: DatasetIndex,
    calibration_size: int,
    seed: int,
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Pick calibration images, seeded and spread over classes, and the evaluation images.

    Calibration comes from ``train/`` when the dataset has one; otherwise from ``val/``, and
    evaluation then leaves those images out, so the two never overlap.

    Raises:
        InputError: taking calibration images from val/ would leave nothing to evaluate.
    """
    pool = index.train or index.val
    size = min(calibration_size, len(pool) if index.train else len(pool) - 1)
    if size < 1:
        raise InputError(
            f"{index.root} has {len(index.val)} image(s): too few to both calibrate and "
            "evaluate; add images or a train/ folder"
        )
    if size < calibration_size:
        logger.warning("Only %d images for calibration (asked for %d)", size, calibration_size)

    calibration = _sample_spread(pool, size, seed)
    if index.train:
        return calibration, list(index.val)
    chosen = {record.path for record in calibration}
    return calibration, [record for record in index.val if record.path not in chosen]


def save_calibration_set(
    root: str,
    records: list[ImageRecord],
    data_cfg: dict[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    """Preprocess the calibration images like evaluation and save them as one array file.

    Returns:
        How many images were kept, and which were skipped as unreadable.
    """
    images, labels, skipped = [], [], []
    batches = iterate_batches(root, records, data_cfg, 32, skipped)
    with StageProgress(len(records), "calibration set") as progress:
        for batch_images, batch_labels in batches:
            images.append(batch_images)
            labels.append(batch_labels)
            progress.update(len(batch_images))
    if not images:
        raise InputError(
            f"none of the {len(records)} calibration images under {root} is readable (see the "
            "skipped files logged above): replace them with readable images"
        )

    np.savez(
        out_dir / CALIBRATION_FILE, images=np.concatenate(images), labels=np.concatenate(labels)
    )
    return {"images": int(sum(len(b) for b in labels)), "skipped": skipped}


def load_calibration_set(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed calibration images and their labels."""
    with np.load(path) as arrays:
        return arrays["images"], arrays["labels"]


def build_transform(data_cfg: dict[str, Any]) -> Any:
    """timm's evaluation transform for a model's data config."""
    return create_transform(**_transform_args(data_cfg), is_training=False)


def iterate_batches(
    root: str,
    records: list[ImageRecord],
    data_cfg: dict[str, Any],
    batch_size: int,
    skipped: list[str],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, labels)`` batches preprocessed for the model, in record order.

    Unreadable images are skipped; once all batches are out, their relative paths are
    appended to ``skipped`` and logged in one warning.
    """
    dataset = _ImageDataset(root, records, build_transform(data_cfg))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=_num_workers(len(records)),
        collate_fn=_collate_readable,
    )
    newly_skipped: list[str] = []
    for images, labels, bad_paths in loader:
        newly_skipped.extend(bad_paths)
        if len(labels):
            yield images, labels

    skipped.extend(newly_skipped)
    if newly_skipped:
        logger.warning(
            "Skipped %d unreadable image(s) of %d under %s: %s",
            len(newly_skipped),
            len(records),
            root,
            ", ".join(newly_skipped),
        )


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, root: str, records: list[ImageRecord], transform: Any) -> None:
        self.root = Path(root)
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Any, int, str]:
        record = self.records[i]
        image = _load_rgb(self.root / record.path)
        if image is None:
            return None, record.label, record.path
        return self.transform(image).numpy(), record.label, record.path


def _collate_readable(items: list[tuple[Any, int, str]]) -> tuple[np.ndarray, np.ndarray, list]:
    good = [(image, label) for image, label, _ in items if image is not None]
    bad = [path for image, _, path in items if image is None]
    if not good:
        return np.empty((0,)), np.empty((0,), dtype=np.int64), bad
    images = np.stack([image for image, _ in good])
    labels = np.array([label for _, label in good], dtype=np.int64)
    return images, labels, bad


def _load_rgb(path: Path) -> Image.Image | None:
    # Grayscale, CMYK, palette and 16-bit images become RGB; anything PIL cannot decode is
    # skipped rather than ending a run that may have taken minutes to get here.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    image = image.point(lambda v: v / 256).convert("L")
                return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        logger.warning("Skipping unreadable image %s: %s", path, error)
        return None


def _index_split(root: Path, split_dir: Path) -> tuple[ImageRecord, ...]:
    wnids = ImageNetInfo().label_names()
    class_index = {wnid: i for i, wnid in enumerate(wnids)}
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in class_dirs if p.name not in class_index]
    if unknown:
        no_val = " has no val/ folder, and it" if split_dir == root else ""
        raise InputError(
            f"{split_dir}{no_val} has folders that are not ImageNet-1k WordNet ids "
            f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): name class "
            "folders by wnid, e.g. val/n01440764/ (the sorted wnid order gives the labels)"
        )

    records = []
    for class_dir in class_dirs:
        for entry in sorted(class_dir.iterdir()):
            if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                stat = entry.stat()
                relative = str(entry.relative_to(root))
                records.append(
                    ImageRecord(
                        relative, class_index[class_dir.name], stat.st_size, stat.st_mtime_ns
                    )
                )
    return tuple(records)


def _sample_spread(pool: tuple[ImageRecord, ...], size: int, seed: int) -> list[ImageRecord]:
    # Round-robin over shuffled classes: with one image per class (as in the shared sample)
    # this picks `size` distinct classes; with many it keeps every class represented.
    rng = random.Random(seed)
    by_class: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in pool:
        by_class[record.label].append(record)
    labels = sorted(by_class)
    rng.shuffle(labels)
    for label in labels:
        rng.shuffle(by_class[label])

    chosen: list[ImageRecord] = []
    depth = 0
    while len(chosen) < size:
        for label in labels:
            if depth < len(by_class[label]) and len(chosen) < size:
                chosen.append(by_class[label][depth])
        depth += 1
    return sorted(chosen, key=lambda record: record.path)


def _transform_args(data_cfg: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data_cfg.items() if k in keys}


def _num_workers(num_images: int) -> int:
    # Decoding JPEGs is the slow part of evaluation; two workers keep a 2-core machine busy
    # while OpenVINO runs, and a handful of images is not worth starting processes for.
    return 0 if num_images < 64 else 2
