"""NestedAttentionLoader: our weight files, or IP-Adapter Plus files as a warm start."""
import logging

from comfy_api.latest import io

from .file_inputs import HOW_TO_GET_WEIGHTS, weight_choices, weight_path, weights_problem
from .host import load_node_weights
from .sockets import CATEGORY, WeightsSocket

log = logging.getLogger(__name__)


class NestedAttentionLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionLoader",
            display_name="Nested Attention Loader (IP-Adapter)",
            category=CATEGORY,
            description="Loads Nested Attention weights: the subject encoder and nested key/value projections that "
                        "personalize a model with a subject's identity from reference images. Also lists IP-Adapter "
                        "Plus files, as a warm start for training.",
            inputs=[
                io.Combo.Input("weights", options=weight_choices(),
                               tooltip="Files in models/nested_attention, and IP-Adapter Plus files in models/ipadapter "
                                       "(listed as 'ipadapter: ...'), which share the layout but were trained for "
                                       "another mechanism: a warm start for training, not a substitute. "
                                       + HOW_TO_GET_WEIGHTS + "."),
            ],
            outputs=[WeightsSocket.Output(display_name="nested_attention",
                                                   tooltip="The loaded weights, for 'Nested Attention Subject'.")],
        )

    @classmethod
    def validate_inputs(cls, weights):
        return weights_problem(weights) or True

    @classmethod
    def execute(cls, weights) -> io.NodeOutput:
        problem = weights_problem(weights)
        if problem is not None:
            raise FileNotFoundError(f"weights: {problem}")
        loaded = load_node_weights(weight_path(weights))
        log.info("%s", loaded.describe())
        return io.NodeOutput(loaded)
