"""A toy world for Nested Attention: parametric people and dogs in prompt-controlled scenes, rendered
deterministically at 64 px, and two small scoring CNNs (identity similarity, scene accuracy).

An experiment built on the pack's public API (``nodes``, ``nested_attention_core``, ``training``)
and the tests' harness (``tests/harness``, the package ``harness``: ComfyUI server processes and
model registration); nothing of the product imports it. See README.md for the world, the experiment
and the table of which product modules each module here imports; ``cli.py`` for commands.

The world and the scorers (the modules in the table below) are pure numpy/PIL/torch and never
import ComfyUI. The base model, the experiment, the evaluation and the demo run on the real
ComfyUI: ``comfy_runtime.load_host()`` bootstraps it, and ``attention_share``, ``base_model``,
``base_pipeline``, ``clip_training``, ``comfy_models``, ``comfy_runtime``, ``experiment``,
``generation`` and ``vae_training`` import it (``evaluation``, ``oracle`` and ``publish`` reach
it through ``generation``); ``toy_server`` and ``demo`` start ComfyUI server processes.

| module | one concept |
| --- | --- |
| ``identity.py`` | identities: attributes, ids, the train / held-out split |
| ``scene.py`` | scene factors, their words, captions |
| ``variation.py`` | per-render jitter from a variation seed |
| ``rng.py`` | the platform-independent random stream and keyed permutation |
| ``pen.py`` / ``person.py`` / ``pet.py`` | drawing: the posed pen, a person, a dog |
| ``backgrounds.py`` / ``styles.py`` | backgrounds; photo, pencil, watercolor |
| ``render.py`` | one subject or two, with masks and boxes |
| ``dataset.py`` | the trainer's data folder; in-memory renders |
| ``nets.py`` / ``scoring.py`` | the scoring CNNs; scoring calls and their file format |
| ``scorer_training.py`` / ``scorer_pipeline.py`` / ``metrics.py`` | training, held-out measurement, metrics |
| ``preview.py`` / ``cli.py`` | contact sheets; the command line |

On ComfyUI (besides the experiment's stages, see README.md):

| module | one concept |
| --- | --- |
| ``comfy_runtime.py`` / ``comfy_models.py`` / ``family.py`` | the host in process; the toy models and family registered |
| ``toy_server.py`` / ``demo.py`` / ``comfyui_pack/`` | the toy workflow (``workflows/``) in a server; ``make demo`` |
| ``figures.py`` | the toy workflow's preview panels and thumbnail, re-made from the committed weights |
| ``grounding.py`` / ``grounding_loss.py`` | which caption words have which region; the base's grounding loss |
| ``footprint.py`` | lines per folder; the product modules each toy module imports |
| ``stage_runner.py`` | the experiment's stages side by side, one process each (``--jobs``) |
"""
import sys
from pathlib import Path

# The toy world runs from a checkout: its harness is the tests' (``tests/harness``, imported as
# ``harness``), put last on sys.path so that nothing on it can shadow ComfyUI's or the pack's modules.
_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
