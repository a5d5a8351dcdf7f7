"""The toy workflow's pictures in the repository, re-made from the committed weights after ``make toyworld``.

    python -m nested_attention.toyworld.figures

Runs ``toyworld/workflows/toyworld_two_subjects.json`` as saved (``demo.run_workflow``, a real headless
ComfyUI) and writes, from its outputs: ``docs/images/toyworld_preview.png`` (the Nested Attention
Preview's panels, person left, dog right) and the workflow's thumbnail
``toyworld/workflows/toyworld_two_subjects.jpg`` (512 x 256: the saved image, then the person's panel).
The README's browser screenshot is the toy world's browser test's (``tests/toyworld/test_browser.py``
writes ``tests/browser/screenshots/toyworld_workflow.png``; copy it to ``docs/images/``).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from .demo import REPO_ROOT, run_workflow

PREVIEW = REPO_ROOT / "docs" / "images" / "toyworld_preview.png"
THUMBNAIL = REPO_ROOT / "toyworld" / "workflows" / "toyworld_two_subjects.jpg"
THUMBNAIL_SIZE = (512, 256)
PANEL_BACKGROUND = (24, 24, 27)  # the preview panels' own background


def preview_sheet(panels: list[Image.Image]) -> Image.Image:
    """The panels side by side, top-aligned."""
    sheet = Image.new("RGB", (sum(p.width for p in panels), max(p.height for p in panels)), PANEL_BACKGROUND)
    x = 0
    for panel in panels:
        sheet.paste(panel.convert("RGB"), (x, 0))
        x += panel.width
    return sheet


def thumbnail(saved: Image.Image, panel: Image.Image) -> Image.Image:
    """The saved image in the left half, the panel fitted into the right half."""
    width, height = THUMBNAIL_SIZE
    out = Image.new("RGB", THUMBNAIL_SIZE, PANEL_BACKGROUND)
    out.paste(saved.convert("RGB").resize((width // 2, height), Image.BICUBIC), (0, 0))
    scale = min((width // 2) / panel.width, height / panel.height)
    fitted = panel.convert("RGB").resize((max(1, round(panel.width * scale)), max(1, round(panel.height * scale))),
                                         Image.BICUBIC)
    out.paste(fitted, (width // 2 + (width // 2 - fitted.width) // 2, (height - fitted.height) // 2))
    return out


def make_figures(preview: Path = PREVIEW, thumb: Path = THUMBNAIL) -> tuple[Path, Path]:
    with tempfile.TemporaryDirectory(prefix="toyworld_figures_") as base_dir:
        run = run_workflow(Path(base_dir))
        saved = [p for p in run.images if Path(base_dir) / "output" in p.parents]  # the rest: temp/ (previews)
        panels = [Image.open(p) for p in run.images if p not in saved]
        if not saved or len(panels) != 2:
            raise RuntimeError(f"the toy workflow gave {len(saved)} saved image(s) and {len(panels)} preview panel(s) "
                               "(expected 1 and 2: the person's and the dog's); its outputs: "
                               f"{[str(p) for p in run.images]}")
        preview.parent.mkdir(parents=True, exist_ok=True)
        preview_sheet(panels).save(preview)
        thumbnail(Image.open(saved[0]), panels[0]).save(thumb, quality=90)
    return preview, thumb


if __name__ == "__main__":
    for path in make_figures(*(Path(a) for a in sys.argv[1:3])):
        print(path)
