"""Save an encoded subject to models/nested_attention_subjects, and load it back."""
import os

import folder_paths
from comfy_api.latest import io

from ..nested_attention_core.subject import save_subject

from .file_inputs import subject_choices, subject_file_problem
from .host import load_node_subject
from .sockets import CATEGORY, SUBJECTS_FOLDER, SubjectSocket


class NestedAttentionSaveSubject(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionSaveSubject",
            display_name="Nested Attention Save Subject",
            category=CATEGORY,
            description="Saves an encoded subject (its identity: word, tokens and nested keys/values) as .safetensors "
                        "in models/nested_attention_subjects, to personalize later images without the reference "
                        "images. The saved name shows on the node, and Load Subject nodes list it at once.",
            inputs=[
                SubjectSocket.Input("subject", tooltip="From 'Nested Attention Subject'."),
                io.String.Input("filename_prefix", default="subject",
                                tooltip="File name prefix; a counter is appended, nothing is overwritten."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, filename_prefix=None, **_):
        """ComfyUI reuses the last run's result (and shows its saved name again) while this value stays
        the same: a generation per prefix, new once a file this prefix wrote is gone, so the subject is
        written again instead of naming a file that is not there."""
        written = _WRITTEN.get(filename_prefix, [])
        if any(not os.path.isfile(path) for path in written):
            written.clear()
            _GENERATION[filename_prefix] = _GENERATION.get(filename_prefix, 0) + 1
        return _GENERATION.get(filename_prefix, 0)

    @classmethod
    def execute(cls, subject, filename_prefix) -> io.NodeOutput:
        folder = folder_paths.get_folder_paths(SUBJECTS_FOLDER)[0]
        full_folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, folder)
        os.makedirs(full_folder, exist_ok=True)
        path = os.path.join(full_folder, f"{name}_{counter:05}_.safetensors")
        save_subject(path, subject)
        _WRITTEN.setdefault(filename_prefix, []).append(path)
        # "text" is shown on the node and triggers the list refresh (web/nested_attention.js)
        return io.NodeOutput(ui={"text": [os.path.relpath(path, folder)]})


_WRITTEN: dict[str, list[str]] = {}  # filename prefix -> the files Save Subject wrote with it (this process)
_GENERATION: dict[str, int] = {}  # filename prefix -> how often one of its files was found deleted


class NestedAttentionLoadSubject(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionLoadSubject",
            display_name="Nested Attention Load Subject",
            category=CATEGORY,
            description="Loads a subject (an identity) saved by 'Nested Attention Save Subject', instead of encoding "
                        "reference images again.",
            inputs=[io.Combo.Input("subject_file", options=subject_choices(),
                                   tooltip="A subject saved by 'Nested Attention Save Subject' (a .safetensors file in "
                                           "models/nested_attention_subjects).")],
            outputs=[SubjectSocket.Output(display_name="subject", tooltip="The subject, for 'Apply Nested Attention'.")],
        )

    @classmethod
    def validate_inputs(cls, subject_file):
        return subject_file_problem(subject_file) or True

    @classmethod
    def execute(cls, subject_file) -> io.NodeOutput:
        problem = subject_file_problem(subject_file)
        if problem is not None:
            raise FileNotFoundError(f"subject_file: {problem}")
        return io.NodeOutput(load_node_subject(folder_paths.get_full_path_or_raise(SUBJECTS_FOLDER, subject_file)))
