"""A small synthetic skin-lesion dataset, in the real layout, for the demo and the tests
(no dataset can be downloaded here). Two visually separable classes, loosely after the
ABCD rule: benign lesions are round, even-edged and an even light brown; malignant ones are
irregular, dark and of several colours.

    python -m skin_cancer.synthetic --out DIR [--train N] [--test N] [--size PX] [--seed S]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skin_cancer import CLASSES


def skin(rng: np.random.Generator, size: int) -> Image.Image:
    tone = np.array([224, 180, 150]) + rng.integers(-25, 20, 3)
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(tone + noise, 0, 255).astype(np.uint8))


def lesion_outline(rng: np.random.Generator, size: int, irregular: bool) -> list[tuple[float, float]]:
    centre = size / 2 + rng.uniform(-size / 10, size / 10, 2)
    radius = size * rng.uniform(0.18, 0.28)
    points = []
    wobble = [(rng.uniform(0.15, 0.35), rng.integers(3, 8), rng.uniform(0, 2 * math.pi)) for _ in range(3)]
    for step in range(64):
        angle = 2 * math.pi * step / 64
        r = radius
        if irregular:
            r *= 1 + sum(a * math.sin(k * angle + phase) for a, k, phase in wobble) / 2
            r *= rng.uniform(0.85, 1.15)
        points.append((centre[0] + r * math.cos(angle), centre[1] + r * math.sin(angle)))
    return points


def lesion(rng: np.random.Generator, size: int, malignant: bool) -> Image.Image:
    image = skin(rng, size)
    draw = ImageDraw.Draw(image)
    outline = lesion_outline(rng, size, irregular=malignant)
    if malignant:
        draw.polygon(outline, fill=tuple(int(v) for v in rng.integers([40, 20, 15], [80, 45, 35])))
        for _ in range(int(rng.integers(3, 6))):  # blotches of other colours inside
            x, y = outline[int(rng.integers(0, len(outline)))]
            cx, cy = (x + size / 2) / 2, (y + size / 2) / 2
            r = size * rng.uniform(0.04, 0.09)
            colour = [(20, 20, 30), (120, 40, 40), (70, 70, 110), (15, 10, 10)][int(rng.integers(0, 4))]
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        return image.filter(ImageFilter.GaussianBlur(0.6))
    draw.polygon(outline, fill=tuple(int(v) for v in rng.integers([150, 100, 70], [185, 130, 95])))
    return image.filter(ImageFilter.GaussianBlur(1.2))


def generate(out: Path, train: int = 60, test: int = 30, size: int = 64, seed: int = 0) -> dict[str, int]:
    """Write `train` and `test` images per class; return how many files of each split."""
    rng = np.random.default_rng(seed)
    counts = {}
    for split, per_class in (("train", train), ("test", test)):
        for name in CLASSES:
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                suffix = "jpg" if n % 2 else "png"  # both formats, as real datasets mix them
                lesion(rng, size, malignant=name == "malignant").save(folder / f"{name}_{n:04d}.{suffix}")
        counts[split] = 2 * per_class
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skin_cancer.synthetic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write train/ and test/ into")
    parser.add_argument("--train", type=int, default=60, help="training images per class (default 60)")
    parser.add_argument("--test", type=int, default=30, help="test images per class (default 30)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.train, args.test) < 1 or args.size < 16:
        parser.error("--train and --test must be at least 1, --size at least 16")
    counts = generate(args.out, args.train, args.test, args.size, args.seed)
    print(f"wrote {counts['train']} training and {counts['test']} test images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
