"""Socket types, category and model folders shared by the nodes."""
import logging
import os

import folder_paths
from comfy_api.latest import io

CATEGORY = "nested_attention"
WEIGHTS_FOLDER = "nested_attention"  # models/nested_attention: our weight files
IPADAPTER_FOLDER = "ipadapter"  # models/ipadapter: IP-Adapter Plus files (also used by other packs)
SUBJECTS_FOLDER = "nested_attention_subjects"  # models/nested_attention_subjects: saved subjects

log = logging.getLogger(__name__)

# Socket types: the type strings are what saved workflows name, so they never change.
WeightsSocket = io.Custom("NESTED_ATTENTION")
SubjectSocket = io.Custom("NESTED_SUBJECT")


def register_model_folders() -> None:
    """Register our model folders with the host unless another pack (or the user's
    extra_model_paths.yaml) already did; then only make sure the default folder is listed. The
    default folders are created, so a user sees where files go before the first one is saved."""
    for name, extensions in ((WEIGHTS_FOLDER, {".safetensors"}),
                             (IPADAPTER_FOLDER, set(folder_paths.supported_pt_extensions)),
                             (SUBJECTS_FOLDER, {".safetensors"})):
        path = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            folder_paths.add_model_folder_path(name, path)
        else:
            folder_paths.folder_names_and_paths[name] = ([path], extensions)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:  # a read-only models folder: the pack still works from other registered paths
            log.warning("could not create the model folder %s (%s); put the files there by hand", path, error)
