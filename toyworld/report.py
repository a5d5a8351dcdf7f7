"""The experiment's results as a markdown table and a PNG grid (reference | ours | baselines, per prompt)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .evaluation import EVAL_SCENES, TWO_SUBJECT_SCENES
from .scene import FACTORS, caption, caption_two

FACTOR_NAMES = tuple(FACTORS)


def markdown_table(scores: dict, meta: dict) -> str:
    single, two = scores["single"], scores["two"]
    lines = [
        f"Held-out identities: {meta['ids_per_domain']} persons and {meta['ids_per_domain']} dogs, "
        f"{len(EVAL_SCENES)} prompts each, one image per (identity, prompt, method) with a fixed seed "
        f"({meta['sampler']}). Identity: mean cosine to {meta['gallery']} other renders of the identity "
        "(± standard error). Prompt: scene model accuracy on the prompt's scene.",
        "",
        "| method | identity ↑ | prompt: all ↑ | " + " | ".join(FACTOR_NAMES) + " |",
        "|---|---|---|" + "---|" * len(FACTOR_NAMES),
    ]
    for name, s in single.items():
        p = s["prompt"]
        lines.append(f"| {name} | {s['identity']:.3f} ± {s['identity_se']:.3f} | {p['all']:.3f} | "
                     + " | ".join(f"{p[f]:.3f}" for f in FACTOR_NAMES) + " |")
    if two:
        lines += ["", f"Two subjects in one image ({meta['pairs']} held-out person/dog pairs x "
                  f"{len(TWO_SUBJECT_SCENES)} prompts; person region = left half, dog = right half; each half "
                  "scored against halves of two-subject renders of its identity):", "",
                  "| method | person identity ↑ | dog identity ↑ | background ↑ | style ↑ |", "|---|---|---|---|---|"]
        for name, parts in two.items():
            person, dog = parts["person"], parts["dog"]
            lines.append(f"| {name} | {person['identity']:.3f} ± {person['identity_se']:.3f} | "
                         f"{dog['identity']:.3f} ± {dog['identity_se']:.3f} | "
                         f"{person['prompt']['background']:.3f} | {person['prompt']['style']:.3f} |")
    return "\n".join(lines) + "\n"


def _label(draw, xy, text, fill=(0, 0, 0)):
    draw.text(xy, text, fill=fill)


def grid_image(rows: dict, two_rows: dict, references: dict, methods: list[str], keys: list, pair_keys: list,
               pair_refs: dict, zoom: int = 2) -> Image.Image:
    """Single-subject block: one row per (identity, prompt) in ``keys``: reference | each method.
    Two-subject block: person reference | dog reference | ours | base."""
    cell, pad, head, left = 64 * zoom, 4, 14, 260
    columns = ["reference", *methods]
    n_rows = len(keys) + (len(pair_keys) + 1 if pair_keys else 0)
    width = left + len(columns) * (cell + pad)
    sheet = Image.new("RGB", (width, head + n_rows * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        _label(draw, (left + c * (cell + pad), 2), name[:22])

    def put(image, r, c):
        tile = Image.fromarray(image).resize((cell, cell), Image.NEAREST)
        sheet.paste(tile, (left + c * (cell + pad), head + r * (cell + pad)))

    for r, key in enumerate(keys):
        domain, identity_id, scene = key
        _label(draw, (4, head + r * (cell + pad) + 4), f"{domain} {identity_id}")
        _label(draw, (4, head + r * (cell + pad) + 20), caption(domain, scene)[:40])
        _label(draw, (4, head + r * (cell + pad) + 34), caption(domain, scene)[40:80])
        put(references[(domain, identity_id)], r, 0)
        for c, name in enumerate(methods, start=1):
            put(rows[name].images[rows[name].keys.index(key)], r, c)
    if pair_keys:
        base = len(keys) + 1
        _label(draw, (4, head + (base - 1) * (cell + pad) + cell // 2),
               "two subjects: person ref | dog ref | ours | base (no subject)")
        for r, key in enumerate(pair_keys, start=base):
            person_id, pet_id, scene = key
            _label(draw, (4, head + r * (cell + pad) + 4), f"person {person_id} + dog {pet_id}")
            text = caption_two(scene, "left")
            _label(draw, (4, head + r * (cell + pad) + 20), text[:40])
            _label(draw, (4, head + r * (cell + pad) + 34), text[40:80])
            put(pair_refs[key][0], r, 0)
            put(pair_refs[key][1], r, 1)
            for c, name in enumerate(("nested attention (ours)", "base (no subject)"), start=2):
                parts = two_rows[name]
                i = parts["person"].keys.index(key)
                put(np.concatenate([parts["person"].images[i], parts["dog"].images[i]], axis=1), r, c)
    return sheet
