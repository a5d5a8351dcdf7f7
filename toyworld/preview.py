"""Contact sheets for people to look at: identities (rows) x scenes (columns), two-subject renders,
then one row per domain of its look values (``look.LOOK_FACTORS``), each named by its scene."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from .identity import PERSON, PET, Identity, sample_identity
from .render import render, render_two
from .look import LOOK_FACTORS
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
LOOK_BACKGROUNDS = ("blue", "snow", "forest", "yellow")


def look_scenes(domain: str) -> list[Scene]:
    """One full-framing photo per look value of ``domain`` (the other look factors unnamed)."""
    scenes = []
    for factor, values in LOOK_FACTORS[domain].items():
        for value in values:
            background = LOOK_BACKGROUNDS[len(scenes) % len(LOOK_BACKGROUNDS)]
            scenes.append(Scene(background, "center", "full", "photo", **{factor: value}))
    return scenes


def scene_label(scene: Scene) -> str:
    return f"{scene.background[:5]} {scene.placement[0]} {'cu' if scene.framing == 'close-up' else 'f'} {scene.style[:3]}"


def contact_sheet(identities: Sequence[Identity], scenes: Sequence[Scene] = PREVIEW_SCENES, size: int = 64,
                  seed: int = 0, pairs: int = 6) -> Image.Image:
    """One row per identity, one column per scene (variation seed ``seed + row``), and a last row of
    ``pairs`` two-subject renders when the identities include a person and a pet; then a row per
    domain: its first identity in ``look_scenes`` (every look value named once)."""
    columns = max(len(scenes), pairs)
    persons = [i for i in identities if i.domain == PERSON]
    pets = [i for i in identities if i.domain == PET]
    looks = [(group[0], look_scenes(group[0].domain)) for group in (persons, pets) if group]
    columns = max([columns] + [len(scenes) for _, scenes in looks])
    pair_rows = 1 if persons and pets and pairs else 0
    rows = len(identities) + pair_rows
    sheet = Image.new("RGB", (columns * size, LABEL_HEIGHT + (rows + len(looks)) * size), (255, 255, 255))
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
    for row, (identity, scenes) in enumerate(looks, start=rows):  # hats, shirts, ...: the same variation seed
        for col, scene in enumerate(scenes):
            sheet.paste(render(identity, scene, seed, size), (col * size, LABEL_HEIGHT + row * size))
    return sheet


def default_identities(per_domain: int = 6, start: int = 0) -> list[Identity]:
    return ([sample_identity(PERSON, start + i) for i in range(per_domain)]
            + [sample_identity(PET, start + i) for i in range(per_domain)])
