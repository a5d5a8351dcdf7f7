"""The pack's file inputs, checked before the run: the weights and saved-subject combos.

Each combo lists the files of its model folder, or one placeholder entry that says what to do when
the folder is empty (an empty combo shows "undefined" in the frontend and fails with a bare
"Required input is missing"). ``weights_problem`` and ``subject_file_problem`` are the nodes'
``validate_inputs``: ComfyUI calls them when the prompt is queued, before anything runs, and shows
the message on the node. Each message says what the file is, where it goes and how to get it.
"""
from __future__ import annotations

import folder_paths

from .sockets import IPADAPTER_FOLDER, SUBJECTS_FOLDER, WEIGHTS_FOLDER

IPADAPTER_PREFIX = "ipadapter: "
NO_WEIGHTS = "no weights installed yet: train them (training/) or add an IP-Adapter Plus file"
NO_SUBJECTS = "no saved subjects yet: save one with Nested Attention Save Subject"

HOW_TO_GET_WEIGHTS = (
    "Nested Attention weights (a subject encoder and the nested key/value projections for one base model, "
    "SD1.5 or SDXL) go in ComfyUI's models/nested_attention/ folder. Get them by training: the pack's "
    "trainer `nested-attention-train` (see the pack's training/ folder and README, 'Train your own "
    "weights'); or, as a warm start only, put an IP-Adapter Plus file in models/ipadapter/ and pick "
    "'ipadapter: <file>'. Then press R in ComfyUI to refresh the list")


def weight_choices() -> list[str]:
    ours = folder_paths.get_filename_list(WEIGHTS_FOLDER)
    theirs = [IPADAPTER_PREFIX + name for name in folder_paths.get_filename_list(IPADAPTER_FOLDER)]
    return ours + theirs or [NO_WEIGHTS]


def weight_path(name: str) -> str | None:
    """The file behind a weights choice, or None if it is not there."""
    if name.startswith(IPADAPTER_PREFIX):
        return folder_paths.get_full_path(IPADAPTER_FOLDER, name[len(IPADAPTER_PREFIX):])
    return folder_paths.get_full_path(WEIGHTS_FOLDER, name)


def weights_problem(name) -> str | None:
    """None if ``name`` is a weights file that is there, else the message for the 'weights' input."""
    if name and name != NO_WEIGHTS and weight_path(name) is not None:
        return None
    if not name or name == NO_WEIGHTS:
        return f"no Nested Attention weights are installed. {HOW_TO_GET_WEIGHTS}"
    if name.startswith(IPADAPTER_PREFIX):
        return (f"IP-Adapter Plus file {name[len(IPADAPTER_PREFIX):]!r} not found in models/ipadapter/ "
                f"(searched: {_folders(IPADAPTER_FOLDER)}). {HOW_TO_GET_WEIGHTS}")
    return (f"Nested Attention weights {name!r} not found in models/nested_attention/ (searched: "
            f"{_folders(WEIGHTS_FOLDER)}). {HOW_TO_GET_WEIGHTS}")


def subject_choices() -> list[str]:
    return folder_paths.get_filename_list(SUBJECTS_FOLDER) or [NO_SUBJECTS]


def subject_file_problem(name) -> str | None:
    """None if ``name`` is a saved subject that is there, else the message for 'subject_file'."""
    if not name or name == NO_SUBJECTS:
        return (f"{NO_SUBJECTS} (it writes models/nested_attention_subjects/), or encode the subject "
                f"from reference images with Nested Attention Subject")
    if folder_paths.get_full_path(SUBJECTS_FOLDER, name) is None:
        return (f"saved subject {name!r} not found in models/nested_attention_subjects/ (searched: "
                f"{_folders(SUBJECTS_FOLDER)}): pick one of the list (press R to refresh it), or save it again "
                f"with Nested Attention Save Subject")
    return None


def _folders(folder: str) -> str:
    return ", ".join(folder_paths.get_folder_paths(folder)) or f"no '{folder}' folder is registered"
