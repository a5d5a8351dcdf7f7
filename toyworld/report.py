"""The experiment's results as markdown tables and a PNG grid (reference | every row, per prompt).

Tables: the main one (identity and prompt alignment of every row), paired differences (ours minus
each other method), per-attribute accuracy against the reference (persons, dogs), the trade-off sweep
(drawn by ``tradeoff.py``), two subjects (with and without region masks, leakage) and the demo.
"""
from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw

from ..nested_attention_core.reference import prepare_reference_images
from .evaluation import BASE, NO_REGIONS, OURS, RENDERS, ROUND_TRIP, TWO_SUBJECT_SCENES, EvalConfig
from .evaluation_two import DEMO_SEEDS
from .identity import ATTRIBUTES, CLASS_WORDS
from .look import LOOK_FIELDS
from .scene import FACTORS, caption, caption_two

FACTOR_NAMES = tuple(FACTORS)


def _pm(value: float, se) -> str:
    return f"{value:.3f} ± {se:.3f}" if se is not None else f"{value:.3f}"


def _maybe(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _scene_text(scene) -> str:
    return f"{scene.background}/{scene.placement}/{scene.framing}/{scene.style}"


def markdown_report(scores: dict, config: EvalConfig, calls: int) -> str:
    ids = config.ids()
    lines = [
        f"Held-out identities: {len(ids)} persons and {len(ids)} dogs (ids {ids[0]}-{ids[-1]}), {config.prompts} "
        f"prompts each ({', '.join(map(_scene_text, config.scenes()))}), one image per (identity, prompt, row) with "
        f"the same fixed seed in every row ({config.sampler.sampler}/{config.sampler.scheduler}, "
        f"{config.sampler.steps} steps, cfg {config.sampler.cfg}); {calls} KSampler calls in all. Identity: mean "
        f"cosine to {config.gallery} other renders of the identity. Prompt: the scene model's reading of the "
        "prompt's scene and of the subject's look the prompt asks for, each prompt asking for values its reference "
        "does not show (a hat or accessory, another shirt colour, expression or pose; close-ups name no shirt or "
        "pose): prompt = the share of the named factors read right (mean over images), all = every named factor "
        "right, scene: all = the four scene factors right, subject = the share of the look factors read right, "
        "subject: all = every look factor right; per factor, the accuracy over the images whose prompt names it. ± is the standard error clustered by identity (the mean of each "
        "identity's images, then the standard error over identities). References reach the encoder whole (as users "
        "give them) or masked (background blanked by the render's subject mask, by the same preparation as the "
        "Subject node's mask input). " + _oracle_note(scores["single"]),
        "",
        "| row | identity ↑ | prompt ↑ | all | scene: all | " + " | ".join(FACTOR_NAMES) + " | subject ↑ | "
        "subject: all | " + " | ".join(LOOK_FIELDS) + " | images | ids |",
        "|---|---|---|---|---|" + "---|" * len(FACTOR_NAMES) + "---|---|" + "---|" * len(LOOK_FIELDS) + "---|---|",
    ]
    for name, s in scores["single"].items():
        p = s["prompt"]
        lines.append(f"| {name} | {_pm(s['identity'], s['identity_se'])} | {_pm(p['share'], s['prompt_se'])} | "
                     f"{p['all']:.3f} | {_maybe(p.get('scene: all'))} | " + " | ".join(f"{p[f]:.3f}" for f in FACTOR_NAMES)
                     + f" | {_pm(p['subject'], s.get('subject_se')) if 'subject' in p else '–'} | "
                     f"{_maybe(p.get('subject: all'))} | " + " | ".join(_maybe(p.get(f)) for f in LOOK_FIELDS) + f" | {s['n']} | {s['identities']} |")
    for name, s in scores["single"].items():
        if "same_images" in s:
            others = ", ".join(f"{row} {value:.3f}" for row, value in s["same_images"].items())
            lines += ["", f"On the {s['n']} images of *{name}*: {others}, oracle {s['identity']:.3f}."]
    lines += paired_table(scores.get("paired", {}))
    lines += attribute_tables(scores["single"])
    lines += sweep_table(scores["sweep"], config)
    lines += two_subject_table(scores["two"], config)
    lines += demo_table(scores.get("demo", {}))
    return "\n".join(lines) + "\n"


def _oracle_note(single: dict) -> str:
    oracles = [name for name in single if name.endswith("(oracle)")]
    if not oracles:
        return ("No per-identity oracle rows: the weights folder holds no oracle subjects "
                "(benchmark/oracles/, written by toyworld/oracle.py).")
    return "Oracle rows cover only the identities with a fitted oracle (column ids)."


def _signed(value, se) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f} ± {se:.3f}" if se is not None else f"{value:+.3f}"


def paired_table(paired: dict) -> list[str]:
    """Ours minus each other method, image by image on the same (identity, prompt, seed)."""
    if not paired:
        return []
    lines = ["", "Paired differences (whole references, strength 1): ours minus the other row on the same "
             "(identity, prompt) with the same seed, the mean of the per-image differences ± the standard error "
             "clustered by identity (prompt and subject: the shares of the named factors / look factors read right).", "",
             "| difference | identity | prompt | subject | images | ids |",
             "|---|---|---|---|---|---|"]
    for name, d in paired.items():
        lines.append(f"| {name} | {_signed(d['identity'], d['identity_se'])} | {_signed(d['prompt'], d['prompt_se'])} "
                     f"| {_signed(d.get('subject'), d.get('subject_se'))} | {d['n']} | {d['identities']} |")
    return lines


def attribute_tables(single: dict) -> list[str]:
    """Per domain, per discrete attribute: how often the identity net reads the reference's value."""
    renders, trips = single[RENDERS]["attributes"], single[ROUND_TRIP]["attributes"]

    def mean(table, word):
        return np.mean([v["accuracy"] for v in table[word].values()])

    reading = "; ".join(f"{word}s: {mean(renders, word):.2f} on renders, {mean(trips, word):.2f} after the VAE "
                        f"round trip, {mean(single[BASE]['attributes'], word):.2f} for the base"
                        for word in renders)
    lines = ["", "Per-attribute accuracy against the reference: the fraction of images in which the identity net's "
             "head for the attribute reads the reference identity's value (in parentheses the standard error "
             "clustered by identity). The renders row is how well the heads read clean renders, the VAE round "
             "trip row how well they read what the base's latents can hold (no generated image is read better), "
             f"and the base row is chance (a random identity of the domain). Mean over attributes: {reading}."]
    for domain, attributes in ATTRIBUTES.items():
        word = CLASS_WORDS[domain]
        names = [name for name, _ in attributes]
        lines += ["", f"| {word}s | " + " | ".join(n.replace("_", " ") for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for row, s in single.items():
            cells = s["attributes"].get(word)
            if cells:
                lines.append(f"| {row} | " + " | ".join(_cell(cells[n]) for n in names) + " |")
    return lines


def _cell(value: dict) -> str:
    se = f" ({value['se']:.2f})" if value["se"] is not None else ""
    return f"{value['accuracy']:.2f}{se}"


def sweep_table(sweep: dict, config: EvalConfig) -> list[str]:
    if not sweep["curves"]:
        return []
    ids = config.ids()[:config.sweep_ids_per_domain]
    scenes = config.scenes()[:config.sweep_prompts]
    lines = ["", f"Trade-off (`tradeoff.png`): each method's strength swept (nested attention and the IP-Adapter file "
             f"through the nested rule: lambda; single token: value scale; decoupled cross-attention: scale), whole "
             f"references, {len(ids)} persons and {len(ids)} dogs "
             f"(ids {ids[0]}-{ids[-1]}) x {len(scenes)} prompts ({', '.join(map(_scene_text, scenes))}); every point, "
             "strength 1 and the base, oracle text and renders included, on the same images' keys.", "",
             "| row | strength | identity ↑ | prompt ↑ | all | scene: all | subject ↑ | images |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [(name, "", s) for name, s in sweep["points"].items()]
    rows += [(method, strength, s) for method, points in sweep["curves"].items() for strength, s in points.items()]
    for name, strength, s in rows:
        p = s["prompt"]
        lines.append(f"| {name} | {strength} | {_pm(s['identity'], s['identity_se'])} | {_pm(p['share'], s['prompt_se'])} "
                     f"| {p['all']:.3f} | {_maybe(p.get('scene: all'))} | {_maybe(p.get('subject'))} | {s['n']} |")
    return lines


def two_subject_table(two: dict, config: EvalConfig) -> list[str]:
    if not two:
        return []
    confined = two.get(OURS, two[BASE])
    lines = ["", f"Two subjects in one image ({config.pairs} held-out person/dog pairs x {len(TWO_SUBJECT_SCENES)} "
             "prompts; person = left half, dog = right half; each half scored against halves of two-subject renders "
             "of its identity; ± clustered by pair). Regions: one Apply per subject with its half as region mask; "
             f"*{NO_REGIONS}*: both subjects applied to the whole image, the words alone bind them. Leakage: the "
             "other half scored against a subject's gallery (person → dog half: the dog half's identity score "
             "towards the person; dog → person half: the person half's towards the dog), in parentheses minus the "
             f"row with region masks (*{OURS}*: same seeds and subjects, each confined to its half: no leakage).", "",
             "| row | person identity ↑ | dog identity ↑ | person → dog half ↓ | dog → person half ↓ | background ↑ "
             "| style ↑ |", "|---|---|---|---|---|---|---|"]
    for name, parts in two.items():
        person, dog = parts["person"], parts["dog"]
        leaks = [f"{parts[k]['identity']:.3f}" + ("" if parts is confined else
                                                   f" ({parts[k]['identity'] - confined[k]['identity']:+.3f})")
                 for k in ("person_in_dog_half", "dog_in_person_half")]
        lines.append(f"| {name} | {_pm(person['identity'], person['identity_se'])} | "
                     f"{_pm(dog['identity'], dog['identity_se'])} | {leaks[0]} | {leaks[1]} | "
                     f"{person['prompt']['background']:.3f} | {person['prompt']['style']:.3f} |")
    return lines


def demo_table(demo: dict) -> list[str]:
    """The demo's scores: ours and the base over the rule's seeds, and ours - base."""
    if not demo:
        return []
    rule = demo["rule"]
    lines = ["", f"The demo (`make demo`, toyworld/workflows/toyworld_two_subjects.json), chosen by a rule written "
             f"before looking: the evaluation's first pair (person {rule['person']}, dog {rule['dog']}), its first "
             f"two-subject prompt (\"{rule['prompt']}\"), the evaluation's seed of that image ({rule['seed']}), "
             f"strength {rule['strength']:g}, region masks, whole references. Its scores over {DEMO_SEEDS} seeds (the "
             "rule's first), ours and the base with the same seeds; ± over seeds.", "",
             "| subject | ours | base | ours - base | ours at the workflow's seed |", "|---|---|---|---|---|"]
    for part in ("person", "dog"):
        ours, base, diff = demo[part][OURS], demo[part][BASE], demo[part]["ours - base"]
        first = next(iter(ours["per_image"].values()))
        lines.append(f"| {part} | {_pm(ours['identity'], ours['identity_se'])} | {_pm(base['identity'], base['identity_se'])} "
                     f"| {_signed(diff['identity'], diff['identity_se'])} | {first:.3f} |")
    return lines


def _label(draw, xy, text, fill=(0, 0, 0)):
    draw.text(xy, text, fill=fill)


def masked_view(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked reference as the encoder's preparation gives it (``prepare_reference_images``)."""
    import torch

    prepared = prepare_reference_images(torch.from_numpy(image.astype(np.float32) / 255),
                                        torch.from_numpy(mask.astype(np.float32) / 255))
    return (prepared[0].numpy() * 255).round().astype(np.uint8)


def grid_image(rows: dict, two_rows: dict, references: dict, keys: list, pair_keys: list, pair_refs: dict,
               zoom: int = 2) -> Image.Image:
    """One-subject block: one line per (identity, prompt) in ``keys``: reference | masked reference |
    every row (blank where a row has no image of the key). Two-subject block: person reference | dog
    reference | every two-subject row. ``references``: (domain, id) -> (image, mask)."""
    cell, pad, head, left = 64 * zoom, 4, 28, 260
    names = list(rows)
    columns = ["reference", "masked reference", *names]
    n_rows = len(keys) + (len(pair_keys) + 1 if pair_keys else 0)
    sheet = Image.new("RGB", (left + len(columns) * (cell + pad), head + n_rows * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        for n, line in enumerate(textwrap.wrap(name, 22)[:2]):
            _label(draw, (left + c * (cell + pad), 2 + 12 * n), line)

    def put(image, r, c):
        tile = Image.fromarray(image).resize((cell, cell), Image.NEAREST)
        sheet.paste(tile, (left + c * (cell + pad), head + r * (cell + pad)))

    def caption_lines(r, title, text):
        y = head + r * (cell + pad)
        _label(draw, (4, y + 4), title)
        for n, line in enumerate(textwrap.wrap(text, 40)[:6]):
            _label(draw, (4, y + 20 + 14 * n), line)

    for r, key in enumerate(keys):
        domain, identity_id, scene = key
        caption_lines(r, f"{domain} {identity_id}", caption(domain, scene))
        image, mask = references[(domain, identity_id)]
        put(image, r, 0)
        put(masked_view(image, mask), r, 1)
        for c, name in enumerate(names, start=2):
            if key in rows[name].keys:
                put(rows[name].image(key), r, c)
    if pair_keys:
        base = len(keys) + 1
        _label(draw, (4, head + (base - 1) * (cell + pad) + cell // 2),
               "two subjects: person ref | dog ref | " + " | ".join(two_rows))
        for r, key in enumerate(pair_keys, start=base):
            person_id, pet_id, scene = key
            caption_lines(r, f"person {person_id} + dog {pet_id}", caption_two(scene, "left"))
            put(pair_refs[key][0], r, 0)
            put(pair_refs[key][1], r, 1)
            for c, parts in enumerate(two_rows.values(), start=2):
                i = parts["person"].keys.index(key)
                put(np.concatenate([parts["person"].images[i], parts["dog"].images[i]], axis=1), r, c)
    return sheet
