"""The data folder: subjects, images, captions, masks, references; and the bad data in it.

Layout (one sub-folder per subject; see README "Train your own weights")::

    data/
      subjects.json          optional {"alice": "woman", "rex": "dog"}; else --default-word
      alice/
        001.jpg  001.txt     the caption must contain the subject's word ("a woman on a beach")
        002.png  002.txt
        masks/001.png        optional subject mask (white = subject), any size
      rex/ ...

Unreadable images are skipped and counted; a caption without the subject's word, or an image smaller
than ``MIN_IMAGE_SIDE`` on its shorter side, is an error naming the file (or skipped with
``--skip-unusable-images``). Subject folders without usable images are named in a warning. The reference
of a training image is another image of the same subject when there is one, else one of a few
augmented crops of itself (``describe_subjects`` logs which, per subject). Every mode PIL reads becomes
8-bit RGB (``to_rgb``): 16-bit scaled by 65535, 32-bit and float by their range, transparency over
white. Pixels are ``[1, H, W, 3]`` float tensors in [0, 1], as ComfyUI's IMAGE.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..nested_attention_core.prompt import normalize_word
from ..nested_attention_core.reference import prepare_reference_images

from .errors import TrainingDataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MASK_FOLDER = "masks"
WORDS_FILE = "subjects.json"
AUGMENT_MIN_SCALE = 0.6  # an augmented reference crop keeps 60-100% of the shorter side
MIN_IMAGE_SIDE = 16  # pixels on the shorter side; smaller images are refused (a 1x1 crop is empty)
LAYOUT_HINT = ("expected one sub-folder per subject holding images (.png/.jpg/.jpeg/.webp/.bmp) with "
               "same-named .txt captions, e.g. data/alice/001.jpg + data/alice/001.txt")


@dataclass(frozen=True)
class TrainImage:
    path: Path
    subject: str  # the subject's folder name
    word: str  # the subject's word, normalized
    caption: str
    digest: str  # sha256 of the image file
    size: tuple[int, int]  # (width, height) after EXIF rotation
    mask_path: Optional[Path] = None
    mask_digest: Optional[str] = None


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class TrainingData:
    images: tuple[TrainImage, ...]
    subjects: dict  # subject name -> tuple of image indices
    unreadable: tuple[Skipped, ...] = ()
    bad_captions: tuple[Skipped, ...] = ()
    root: Path = field(default=Path("."))
    too_small: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def words(self) -> list[str]:
        return sorted({image.word for image in self.images})

    def summary(self) -> dict:
        return {"event": "data", "folder": str(self.root), "images": len(self.images),
                "subjects": len(self.subjects), "words": self.words(),
                "skipped_unreadable": len(self.unreadable), "skipped_bad_captions": len(self.bad_captions),
                "skipped_too_small": len(self.too_small),
                "unreadable_files": [str(s.path) for s in self.unreadable],
                "bad_caption_files": [str(s.path) for s in self.bad_captions],
                "too_small_files": [str(s.path) for s in self.too_small],
                "subject_images": {name: len(indices) for name, indices in self.subjects.items()}}


@dataclass(frozen=True)
class ReferenceChoice:
    image: int  # index into TrainingData.images
    view: Optional[int]  # None: the whole image; k: the k-th augmented crop
    masked: bool = True  # the background blanked by the image's mask (when it has one)


# ---- scanning -----------------------------------------------------------------------------------

def scan_data_folder(folder, has_word: Callable[[str, str], bool], words_file: Optional[Path] = None,
                     default_word: Optional[str] = None, skip_unusable: bool = False) -> TrainingData:
    """Every usable training image of ``folder``. ``has_word(caption, word)`` says whether the
    tokenized caption holds the word (the host tokenizer decides what a word is)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TrainingDataError(f"data folder {root} does not exist or is not a folder: pass --data DIR; {LAYOUT_HINT}")
    words = _read_words(words_file)
    subject_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = sorted(set(words) - {p.name for p in subject_dirs})
    if unknown:
        log.warning("%s names subjects without a folder in %s: %s", words_file, root, unknown)
    images, subjects, unreadable, bad_captions, too_small = [], {}, [], [], []
    for subject_dir in subject_dirs:
        files = sorted(p for p in subject_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            log.warning("subject folder %s has no images (%s): it is not trained on", subject_dir,
                        "/".join(IMAGE_SUFFIXES))
            continue
        word = _subject_word(subject_dir, words, default_word, words_file)
        indices = []
        for path in files:
            try:
                data = path.read_bytes()
                size = read_image_bytes(data).size
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
                log.warning("skipping unreadable image %s (%s)", path, err)
                unreadable.append(Skipped(path, f"{type(err).__name__}: {err}"))
                continue
            if min(size) < MIN_IMAGE_SIDE:
                problem = (f"image {path} is {size[0]}x{size[1]} pixels, below the minimum of {MIN_IMAGE_SIDE} pixels "
                           "on the shorter side")
                if not skip_unusable:
                    raise TrainingDataError(f"{problem}; replace it with a larger image or remove it, or pass "
                                            "--skip-unusable-images to skip such images")
                log.warning("skipping %s", problem)
                too_small.append(Skipped(path, problem))
                continue
            problem, caption = _caption_problem(path, word, has_word)
            if problem:
                if not skip_unusable:
                    raise TrainingDataError(
                        f"{problem}; fix the caption, or pass --skip-unusable-images to skip such images")
                log.warning("skipping %s: %s", path, problem)
                bad_captions.append(Skipped(path, problem))
                continue
            mask_path = _mask_path(path)
            mask_digest = _check_mask(mask_path) if mask_path else None
            indices.append(len(images))
            images.append(TrainImage(path, subject_dir.name, word, caption, hashlib.sha256(data).hexdigest(),
                                     size, mask_path, mask_digest))
        if indices:
            subjects[subject_dir.name] = tuple(indices)
        else:
            log.warning("subject folder %s has no usable images (%d skipped, see above): it is not trained on",
                        subject_dir, len(files))
    if not images:
        skipped = len(unreadable) + len(bad_captions) + len(too_small)
        detail = f" ({skipped} image(s) skipped: unreadable, bad captions or too small)" if skipped else ""
        top_level = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = f"; images directly in {root} ({', '.join(top_level)}) are not used: move them into a subject folder" \
            if top_level else ""
        raise TrainingDataError(f"data folder {root} has no usable training images{detail}: {LAYOUT_HINT}{hint}")
    return TrainingData(tuple(images), subjects, tuple(unreadable), tuple(bad_captions), root, tuple(too_small))


def describe_subjects(data: TrainingData, reference: str, views: int) -> None:
    """Log per subject how many images it has and what its references are (other images, or augmented crops)."""
    for name, indices in data.subjects.items():
        count = len(indices)
        if reference == "self":
            references = "each image itself (--reference self)"
        elif count > 1:
            references = "its other images"
        else:
            references = (f"{views} augmented crops of that image (--augment-views), as it is the subject's only "
                          "image: add more images of it for a better subject encoder")
        log.info("subject %s (word %r): %d image%s; references: %s", name, data.images[indices[0]].word, count,
                 "s" if count != 1 else "", references)


def _read_words(words_file: Optional[Path]) -> dict[str, str]:
    if words_file is None:
        return {}
    try:
        words = json.loads(Path(words_file).read_text(encoding="utf-8"))
    except OSError as err:
        raise TrainingDataError(
            f"subject words file {words_file} cannot be read ({err}); check --subject-words") from None
    except json.JSONDecodeError as err:
        raise TrainingDataError(f"subject words file {words_file} is not valid JSON ({err}); write it as "
                                '{"<subject folder>": "<word>", ...}') from None
    if not isinstance(words, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in words.items()):
        raise TrainingDataError(f"subject words file {words_file} must be a JSON object of strings, "
                                '{"<subject folder>": "<word>", ...}')
    return words


def _subject_word(subject_dir: Path, words: dict[str, str], default_word: Optional[str], words_file) -> str:
    word = words.get(subject_dir.name, default_word)
    if word is None:
        where = f"{words_file} has no entry for it" if words_file else "there is no subjects.json"
        raise TrainingDataError(f"subject folder {subject_dir} has no word ({where}): add "
                                f'"{subject_dir.name}": "<word>" to subjects.json, or pass --default-word, e.g. person')
    try:
        return normalize_word(word)
    except ValueError:
        raise TrainingDataError(
            f"subject folder {subject_dir} has an empty word; give it a word such as 'person'") from None


def _caption_problem(path: Path, word: str, has_word) -> tuple[Optional[str], str]:
    caption_path = path.with_suffix(".txt")
    if not caption_path.is_file():
        return f"image {path} has no caption file {caption_path.name}", ""
    caption = " ".join(caption_path.read_text(encoding="utf-8", errors="replace").split())
    if not caption:
        return f"caption {caption_path} is empty (it must contain the subject word {word!r})", caption
    if not has_word(caption, word):
        return f"caption {caption_path} does not contain the subject word {word!r}: {caption!r}", caption
    return None, caption


def _mask_path(image_path: Path) -> Optional[Path]:
    folder = image_path.parent / MASK_FOLDER
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / (image_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _check_mask(mask_path: Path) -> str:
    try:
        data = mask_path.read_bytes()
        read_image_bytes(data)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise TrainingDataError(f"subject mask {mask_path} cannot be read ({err}); replace it or remove it") from None
    return hashlib.sha256(data).hexdigest()


# ---- pixels -------------------------------------------------------------------------------------

def read_image_bytes(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image)


def load_rgb(path: Path) -> Image.Image:
    return to_rgb(read_image_bytes(Path(path).read_bytes()))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode PIL reads as 8-bit RGB; transparency (alpha or a transparent colour) composited over white."""
    image = to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def to_8bit(image: Image.Image) -> Image.Image:
    """Grayscale of more than 8 bits as 8-bit L, scaled rather than clipped (PIL's convert clips at 255, so a
    16-bit image became white): 16-bit (I;16*) by 65535; 32-bit integers (I) by 65535 when they fit in 16
    bits, else by their range; floats (F) as they are when within [0, 1], else by their range. Other modes
    are returned as they are."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        array = array / 65535.0
    elif not (image.mode == "F" and low >= 0 and high <= 1):
        array = (array - low) / max(high - low, 1e-12)
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8), "L")


def load_mask(path: Path, size: tuple[int, int]) -> Image.Image:
    mask = to_8bit(read_image_bytes(Path(path).read_bytes()))
    mask = mask.getchannel("A") if mask.mode in ("RGBA", "LA") and _alpha_is_mask(mask) else mask.convert("L")
    return mask if mask.size == size else mask.resize(size, Image.BILINEAR)


def _alpha_is_mask(image: Image.Image) -> bool:
    return image.getchannel("A").getextrema() != (255, 255)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> [1, H, W, 3]; PIL L -> [1, H, W]; float in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy())[None]


@dataclass(frozen=True)
class TargetCrop:
    """How a training image became the square training target (SDXL size conditioning)."""
    width: int  # original size
    height: int
    crop_left: int  # in resized pixels
    crop_top: int
    resolution: int


def target_crop(size: tuple[int, int], resolution: int) -> tuple[tuple[int, int], TargetCrop]:
    width, height = size
    scale = resolution / min(width, height)
    resized = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    left, top = (resized[0] - resolution) // 2, (resized[1] - resolution) // 2
    return resized, TargetCrop(width, height, left, top, resolution)


def target_pixels(image: TrainImage, resolution: int) -> tuple[torch.Tensor, TargetCrop]:
    """The training image resized (shorter side = resolution) and center-cropped: [1, R, R, 3]."""
    resized, crop = target_crop(image.size, resolution)
    box = (crop.crop_left, crop.crop_top, crop.crop_left + resolution, crop.crop_top + resolution)
    pixels = load_rgb(image.path).resize(resized, Image.BICUBIC).crop(box)
    return to_tensor(pixels), crop


def target_mask(image: TrainImage, resolution: int) -> Optional[torch.Tensor]:
    """The subject mask with the same resize and crop as the target: [1, R, R], or None."""
    if image.mask_path is None:
        return None
    resized, crop = target_crop(image.size, resolution)
    box = (crop.crop_left, crop.crop_top, crop.crop_left + resolution, crop.crop_top + resolution)
    return to_tensor(load_mask(image.mask_path, image.size).resize(resized, Image.BILINEAR).crop(box))


def reference_pixels(image: TrainImage, view: Optional[int], masked: bool = True) -> torch.Tensor:
    """A reference image for the CLIP vision tower: [1, H, W, 3], background blanked by the mask when
    ``masked`` and the image has one (``prepare_reference_images``, as the Subject node does).

    ``view`` None is the whole image; an integer is a deterministic augmented crop (a random square-ish
    crop of 60-100% of the shorter side, flipped half of the time), the same for the same image bytes."""
    pixels = load_rgb(image.path)
    mask = load_mask(image.mask_path, image.size) if image.mask_path and masked else None
    if view is not None:
        rng = random.Random(f"{image.digest}/{view}")
        width, height = pixels.size
        side = int(min(width, height) * rng.uniform(AUGMENT_MIN_SCALE, 1.0))
        left, top = rng.randint(0, width - side), rng.randint(0, height - side)
        box = (left, top, left + side, top + side)
        pixels = pixels.crop(box)
        mask = mask.crop(box) if mask is not None else None
        if rng.random() < 0.5:
            pixels = ImageOps.mirror(pixels)
            mask = ImageOps.mirror(mask) if mask is not None else None
    return prepare_reference_images(to_tensor(pixels), to_tensor(mask) if mask is not None else None)


def choose_reference(data: TrainingData, index: int, rng: random.Random, mode: str, views: int,
                     mask_share: float = 1.0) -> ReferenceChoice:
    """The reference of training image ``index``: another image of its subject, else a crop of itself;
    masked with probability ``mask_share`` (drawn last: the image and view do not depend on it)."""
    if mode == "self":
        image, view = index, None
    else:
        others = [i for i in data.subjects[data.images[index].subject] if i != index]
        image, view = (rng.choice(others), None) if others else (index, rng.randrange(views))
    return ReferenceChoice(image, view, rng.random() < mask_share)
