"""NestedAttentionSubject: reference images -> subject tokens -> every layer's nested keys/values."""
import os

import comfy.utils
from comfy_api.latest import io

from .host import check_node_weights, encode_node_subject, reference_features
from .sockets import CATEGORY, SubjectSocket, WeightsSocket


class NestedAttentionSubject(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionSubject",
            display_name="Nested Attention Subject (reference)",
            category=CATEGORY,
            description="Encodes reference images of one subject (a person's identity, a pet) into nested keys and "
                        "values for every cross-attention layer, once, before sampling.",
            inputs=[
                WeightsSocket.Input("nested_attention", tooltip="The weights from 'Nested Attention Loader'."),
                io.ClipVision.Input("clip_vision", tooltip="The CLIP vision model the weights were trained with "
                                                           "(ViT-H for IP-Adapter Plus based weights)."),
                io.Image.Input("image", tooltip="One or more reference images of the same subject; the tokens of "
                                                "all images are used together."),
                io.String.Input("word", default="person",
                                tooltip="The word of the prompt that names this subject, e.g. 'person', 'man', "
                                        "'dog'. Only this word's value changes in the cross-attention."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional subject mask of the reference image(s): the background is "
                                      "blanked to white before encoding. Resized to the image if needed."),
            ],
            outputs=[SubjectSocket.Output(display_name="subject",
                                          tooltip="The encoded subject, for 'Apply Nested Attention'.")],
        )

    @classmethod
    def execute(cls, nested_attention, clip_vision, image, word, mask=None) -> io.NodeOutput:
        check_node_weights(nested_attention)  # before the CLIP vision model runs
        features = reference_features(clip_vision, image, mask)
        progress = comfy.utils.ProgressBar(len(nested_attention.layers))
        subject = encode_node_subject(nested_attention, features, word,
                                      progress=lambda done, total: progress.update_absolute(done, total),
                                      source=f"weights {os.path.basename(nested_attention.path)}")
        return io.NodeOutput(subject)
