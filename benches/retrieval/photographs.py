"""The images: scikit-image's bundled photographs, each under known
transformations, with SIFT descriptors from scikit-image's own SIFT.

Every original and its transformed copies form one *family*; the members
of a family are each other's relevant items (retrieval.py). Nothing here
downloads: only the photographs inside the scikit-image wheel are used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

# Imported lazily by the functions below so that `import photographs` works
# (and the test can skip loudly) where scikit-image is missing.

# Every natural photograph the scikit-image wheel ships (0.26: the files in
# skimage/data). Left out on purpose: drawings and synthetic images (horse,
# logo, chessboard, color, phantom, binary_blobs, checkerboard, colorwheel),
# the 25×25 faces of lfw_subset, and the right half of the motorcycle
# stereo pair (a near-duplicate of the left one, in another family).
PHOTOGRAPHS: Tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "moon",
    "motorcycle",
    "page",
    "retina",
    "rocket",
    "text",
)


def load_photograph(name: str, max_side: int) -> np.ndarray:
    """The photograph as float64 grey levels in [0, 1], shrunk (never
    enlarged) so that its longer side is at most ``max_side`` pixels."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.transform import rescale
    from skimage.util import img_as_float

    if name == "motorcycle":
        image = data.stereo_motorcycle()[0]
    else:
        image = getattr(data, name)()
    image = img_as_float(image)
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    factor = max_side / max(image.shape)
    if factor < 1.0:
        image = rescale(image, factor, anti_aliasing=True)
    return np.clip(image, 0.0, 1.0)


def _rotate(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(image: np.ndarray) -> np.ndarray:
        from skimage.transform import rotate

        # The canvas grows to hold the whole rotated image; the corners are
        # black, as a photograph of a rotated print would have a border.
        return rotate(image, degrees, resize=True, mode="constant", cval=0.0)

    return apply


def _scale(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(image: np.ndarray) -> np.ndarray:
        from skimage.transform import rescale

        return np.clip(rescale(image, factor, anti_aliasing=factor < 1.0), 0.0, 1.0)

    return apply


def _crop(fraction: float, corner: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Keep ``fraction`` of each side, centred or from the top-left corner."""

    def apply(image: np.ndarray) -> np.ndarray:
        h, w = image.shape
        ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
        top, left = (0, 0) if corner else ((h - ch) // 2, (w - cw) // 2)
        return image[top : top + ch, left : left + cw].copy()

    return apply


def _brightness(gain: float, gamma: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(image: np.ndarray) -> np.ndarray:
        return np.clip(gain * image**gamma, 0.0, 1.0)

    return apply


def _jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    """Re-encode as 8-bit JPEG at ``quality`` (Pillow, a scikit-image
    dependency) and decode it again."""

    def apply(image: np.ndarray) -> np.ndarray:
        from PIL import Image

        grey = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return np.asarray(Image.open(buffer), dtype=np.float64) / 255.0

    return apply


def _chain(*steps: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(image: np.ndarray) -> np.ndarray:
        for step in steps:
            image = step(image)
        return image

    return apply


# name → transformation of an original; each one's output joins the
# original's family. Strong enough that raw VLAD does not find every copy.
TRANSFORMATIONS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rotate 10°": _rotate(10.0),
    "rotate 45°": _rotate(45.0),
    "scale 0.75": _scale(0.75),
    "scale 0.5": _scale(0.5),
    "crop 70 % centre": _crop(0.7, corner=False),
    "crop 50 % corner": _crop(0.5, corner=True),
    "darker ×0.5": _brightness(0.5, 1.0),
    "brighter γ 0.5": _brightness(1.0, 0.5),
    "jpeg q40": _jpeg(40),
    "jpeg q10": _jpeg(10),
    "rotate 20° + scale 0.7 + jpeg q20": _chain(_rotate(20.0), _scale(0.7), _jpeg(20)),
}


def sift_descriptors(image: np.ndarray, max_keypoints: int, seed: int) -> np.ndarray:
    """``(n, 128)`` uint8 SIFT descriptors of ``image`` (scikit-image's SIFT,
    without its 2× upsampling, to keep the run short); at most
    ``max_keypoints`` of them, a seeded subsample. An image in which SIFT
    finds nothing has ``n = 0`` (its encoding is a row of zeros)."""
    from skimage.feature import SIFT

    sift = SIFT(upsampling=1)
    try:
        sift.detect_and_extract(image)
    except RuntimeError:
        # scikit-image raises when it finds no keypoint at all.
        return np.zeros((0, 128), dtype=np.uint8)
    descriptors = np.ascontiguousarray(sift.descriptors, dtype=np.uint8)
    if len(descriptors) > max_keypoints:
        keep = np.random.default_rng(seed).choice(len(descriptors), max_keypoints, replace=False)
        descriptors = descriptors[np.sort(keep)]
    return descriptors


@dataclass
class Collection:
    """The images of the benchmark: per image its descriptors, its family
    (the index of its original in ``originals``) and what was done to it."""

    originals: List[str]
    descriptors: List[np.ndarray]
    family: np.ndarray  # (T,) int64
    transformation: List[str]

    def subset(self, families: Sequence[int]) -> "Collection":
        """The images of the given families (their indices unchanged)."""
        wanted = set(int(f) for f in families)
        rows = [t for t, f in enumerate(self.family) if int(f) in wanted]
        return Collection(
            originals=self.originals,
            descriptors=[self.descriptors[t] for t in rows],
            family=self.family[rows],
            transformation=[self.transformation[t] for t in rows],
        )

    @property
    def n_descriptors(self) -> int:
        return sum(len(d) for d in self.descriptors)


def build_collection(
    originals: Sequence[str] = PHOTOGRAPHS,
    transformations: Sequence[str] = tuple(TRANSFORMATIONS),
    max_side: int = 320,
    max_keypoints: int = 400,
    seed: int = 1234,
) -> Collection:
    """Each original, then each of its transformed copies, with their
    descriptors; deterministic for given arguments."""
    descriptors: List[np.ndarray] = []
    family: List[int] = []
    transformation: List[str] = []
    for f, name in enumerate(originals):
        original = load_photograph(name, max_side)
        for what in ("original", *transformations):
            image = original if what == "original" else TRANSFORMATIONS[what](original)
            descriptors.append(sift_descriptors(image, max_keypoints, seed + len(descriptors)))
            family.append(f)
            transformation.append(what)
    return Collection(list(originals), descriptors, np.asarray(family, dtype=np.int64), transformation)
