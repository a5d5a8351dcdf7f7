"""The toy workflow's pictures (``figures.py``): the preview sheet and the thumbnail, from a real run."""
from __future__ import annotations

import numpy as np
from PIL import Image

from nested_attention.toyworld.figures import THUMBNAIL_SIZE, make_figures, preview_sheet, thumbnail


def test_the_sheet_puts_the_panels_side_by_side_and_the_thumbnail_holds_image_and_panel():
    red, blue = Image.new("RGB", (30, 40), (255, 0, 0)), Image.new("RGB", (20, 50), (0, 0, 255))
    sheet = preview_sheet([red, blue])
    assert sheet.size == (50, 50) and sheet.getpixel((5, 5)) == (255, 0, 0) and sheet.getpixel((40, 45)) == (0, 0, 255)
    thumb = np.asarray(thumbnail(Image.new("RGB", (64, 64), (0, 255, 0)), blue))
    assert thumb.shape == (THUMBNAIL_SIZE[1], THUMBNAIL_SIZE[0], 3)
    assert (thumb[:, :THUMBNAIL_SIZE[0] // 2] == (0, 255, 0)).all()
    assert (thumb[128, 384] == (0, 0, 255)).all()  # the panel, fitted into the right half


def test_figures_come_from_a_run_of_the_toy_workflow(tmp_path):
    preview, thumb = make_figures(tmp_path / "preview.png", tmp_path / "thumb.jpg")
    panels = Image.open(preview)
    assert panels.width > 2 * 500 and panels.height > 500  # the person's and the dog's panel
    assert Image.open(thumb).size == THUMBNAIL_SIZE
