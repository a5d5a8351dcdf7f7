"""The tests' harness, imported as the package ``harness`` (``tests/`` is on ``sys.path`` through
pytest.ini's ``pythonpath``; ``make tiny-models`` and ``make bench`` set ``PYTHONPATH=tests``).

Nothing here is part of the pack, and nothing here imports the toy world (``toyworld/`` builds on
this harness, never the other way round; ``tests/test_standalone.py`` checks it).

| module | one concept |
| --- | --- |
| ``server.py`` | a real headless ComfyUI server process with this pack: base directory, HTTP, runs |
| ``workflows.py`` | UI-format workflows turned into API prompts; swaps to the tiny models |
| ``browser.py`` | a headless Chromium on ComfyUI's frontend, and a user's steps there |
| ``tiny_models.py`` | the tiny random-weight checkpoints and CLIP vision tower (``make tiny-models``) |
| ``tiny_comfy.py`` | registering the tiny models ComfyUI cannot recognise, and their families |
| ``comfy_registration.py`` | the two registration helpers (model config, CLIP vision layout) |
| ``comfyui_pack/`` | a custom-node folder that registers the tiny models in a server process |
| ``workflows/`` | the tests' own workflows on the tiny models |
"""
