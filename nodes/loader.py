"""NestedAttentionLoader: our weight files, or IP-Adapter Plus files as a warm start."""
import logging

import folder_paths
from comfy_api.latest import io

from ..nested_attention_core.weights import load_weights

from .sockets import CATEGORY, IPADAPTER_FOLDER, WEIGHTS_FOLDER, NestedAttentionWeights

IPADAPTER_PREFIX = "ipadapter: "
log = logging.getLogger(__name__)


def weight_choices() -> list[str]:
    ours = folder_paths.get_filename_list(WEIGHTS_FOLDER)
    theirs = [IPADAPTER_PREFIX + name for name in folder_paths.get_filename_list(IPADAPTER_FOLDER)]
    return ours + theirs


def weight_path(name: str) -> str:
    if name.startswith(IPADAPTER_PREFIX):
        return folder_paths.get_full_path_or_raise(IPADAPTER_FOLDER, name[len(IPADAPTER_PREFIX):])
    return folder_paths.get_full_path_or_raise(WEIGHTS_FOLDER, name)


class NestedAttentionLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionLoader",
            display_name="Nested Attention Loader",
            category=CATEGORY,
            description="Loads a subject encoder and its nested key/value projections.",
            inputs=[
                io.Combo.Input("weights", options=weight_choices(),
                               tooltip="Files in models/nested_attention (ours), and IP-Adapter Plus files in "
                                       "models/ipadapter (listed as 'ipadapter: ...'), which have the same layout "
                                       "but were trained for another mechanism: a warm start for training."),
            ],
            outputs=[NestedAttentionWeights.Output(display_name="nested_attention",
                                                   tooltip="The loaded weights, for 'Nested Attention Subject'.")],
        )

    @classmethod
    def execute(cls, weights) -> io.NodeOutput:
        loaded = load_weights(weight_path(weights))
        log.info("%s", loaded.describe())
        return io.NodeOutput(loaded)
