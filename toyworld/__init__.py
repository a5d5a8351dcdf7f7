"""A toy world for Nested Attention: parametric people and dogs in prompt-controlled scenes, rendered
deterministically at 64 px, and two small scoring CNNs (identity similarity, scene accuracy).

Pure numpy/PIL/torch; never imports ComfyUI. See README.md for the world and ``cli.py`` for commands.

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
"""
