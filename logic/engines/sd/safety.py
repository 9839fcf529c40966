"""The safety hook (flagged images become a placeholder plus a sentence, never a black square) and grids."""

from __future__ import annotations

from PIL import Image, ImageDraw

SAFETY_SENTENCE = ("Image {index} (seed {seed}) was flagged by the safety checker as possibly not safe for work, "
                   "so a placeholder was saved instead; turn the safety checker off in the settings to keep such images.")


def placeholder_image(size: tuple[int, int], text: str = "Hidden by the safety checker") -> Image.Image:
    image = Image.new("RGB", size, (96, 96, 96))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, size[0] - 3, size[1] - 3], outline=(160, 160, 160), width=2)
    draw.text((8, size[1] // 2 - 6), text, fill=(235, 235, 235))
    return image


def apply_safety(images: list[Image.Image], seeds: list[int], checker, enabled: bool,
                 first_index: int = 1) -> tuple[list[Image.Image], list[str]]:
    """Replace flagged images by a placeholder; return the images and one sentence per replacement."""
    if not enabled or checker is None or not images:
        return images, []
    flags = checker(images)
    kept, notes = [], []
    for offset, (image, seed, flagged) in enumerate(zip(images, seeds, flags)):
        if flagged:
            kept.append(placeholder_image(image.size))
            notes.append(SAFETY_SENTENCE.format(index=first_index + offset, seed=seed))
        else:
            kept.append(image)
    return kept, notes


def safety_status(checker, enabled: bool) -> str:
    if not enabled:
        return "off"
    return "on" if checker is not None else "unavailable (this model has no safety checker; images were not checked)"


def make_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """A contact sheet of same-size images (as square as possible)."""
    import math

    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height), (0, 0, 0))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
