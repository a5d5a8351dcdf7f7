"""The reference images of ``toyworld/workflows/toyworld_two_subjects.json``, rendered by the toy world.

    python -m nested_attention.toyworld.example_references [FOLDER]

Held-out identities (never seen by any trained toy model): person 1800 and dog 1800, each in its
evaluation reference render (``evaluation.reference_render``, 64 px). Writes ``toyworld_person.png``
and ``toyworld_dog.png`` into FOLDER (default ``toyworld/workflows/input/``, where they are committed);
the same identities give the same pixels on every machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from .evaluation import reference_render
from .identity import PERSON, PET

DEFAULT_FOLDER = Path(__file__).resolve().parent / "workflows" / "input"
# file name -> (identity domain, held-out identity id)
REFERENCES = {"toyworld_person.png": (PERSON, 1800), "toyworld_dog.png": (PET, 1800)}


def render_references() -> dict[str, Image.Image]:
    """File name -> the reference image (RGB, 64 x 64)."""
    return {name: Image.fromarray(reference_render(domain, identity_id)) for name, (domain, identity_id)
            in REFERENCES.items()}


def write_references(folder=DEFAULT_FOLDER) -> list[Path]:
    """Render the references as PNGs into ``folder``; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in render_references().items():
        image.save(folder / name, format="PNG")
        paths.append(folder / name)
    return paths


if __name__ == "__main__":
    for path in write_references(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FOLDER):
        print(path)
