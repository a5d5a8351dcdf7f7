"""Contact sheets for people to look at: identities (rows) x scenes (columns), then two-subject renders."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from .identity import PERSON, PET, Identity, sample_identity
from .render import render, render_two
from .scene import Scene

PREVIEW_SCENES = (
    Scene("red", "center", "full", "photo"), Scene("blue", "left", "full", "photo"),
    Scene("green", "right", "close-up", "photo"), Scene("yellow", "center", "close-up", "photo"),
    Scene("snow", "left", "full", "photo"), Scene("night", "right", "full", "photo"),
    Scene("beach", "center", "full", "photo"), Scene("forest", "center", "close-up", "photo"),
    Scene("red", "center", "full", "pencil"), Scene("beach", "left", "close-up", "pencil"),
    Scene("blue", "center", "full", "watercolor"), Scene("night", "center", "close-up", "watercolor"),
)
LABEL_HEIGHT = 12


def scene_label(scene: Scene) -> str:
    return f"{scene.background[:5]} {scene.placement[0]} {'cu' if scene.framing == 'close-up' else 'f'} {scene.style[:3]}"


def contact_sheet(identities: Sequence[Identity], scenes: Sequence[Scene] = PREVIEW_SCENES, size: int = 64,
                  seed: int = 0, pairs: int = 6) -> Image.Image:
    """One row per identity, one column per scene (variation seed ``seed + row``), and a last row of
    ``pairs`` two-subject renders when the identities include a person and a pet."""
    columns = max(len(scenes), pairs)
    persons = [i for i in identities if i.domain == PERSON]
    pets = [i for i in identities if i.domain == PET]
    rows = len(identities) + (1 if persons and pets and pairs else 0)
    sheet = Image.new("RGB", (columns * size, LABEL_HEIGHT + rows * size), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for col, scene in enumerate(scenes):
        draw.text((col * size + 2, 1), scene_label(scene), fill=(0, 0, 0))
    for row, identity in enumerate(identities):
        for col, scene in enumerate(scenes):
            sheet.paste(render(identity, scene, seed + row, size), (col * size, LABEL_HEIGHT + row * size))
    if rows > len(identities):
        for col in range(pairs):
            scene = scenes[col % len(scenes)]
            pair = render_two(persons[col % len(persons)], pets[col % len(pets)], scene, seed + col, size,
                              person_side="left" if col % 2 == 0 else "right")
            sheet.paste(pair.image, (col * size, LABEL_HEIGHT + len(identities) * size))
    return sheet


def default_identities(per_domain: int = 6, start: int = 0) -> list[Identity]:
    return ([sample_identity(PERSON, start + i) for i in range(per_domain)]
            + [sample_identity(PET, start + i) for i in range(per_domain)])
