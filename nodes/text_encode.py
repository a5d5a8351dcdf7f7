"""NestedAttentionTextEncode: CLIPTextEncode that also records where each word of the prompt sits."""
from comfy_api.latest import io

from .host import encode_prompt
from .sockets import CATEGORY


class NestedAttentionTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionTextEncode",
            display_name="Nested Attention Text Encode",
            category=CATEGORY,
            description="Encodes a prompt like CLIP Text Encode and keeps the position of every word, so that "
                        "Apply Nested Attention finds the subject word (e.g. 'person', 'dog') at sampling time. "
                        "Use it for the positive prompt of a personalized (subject-driven) image.",
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder of the checkpoint."),
                io.String.Input("text", multiline=True, dynamic_prompts=True,
                                tooltip="The prompt. It must contain each subject's word, e.g. 'a photo of a person "
                                        "with a dog on the beach'. Weights like (dog:1.2) are fine."),
            ],
            outputs=[io.Conditioning.Output(tooltip="Conditioning for KSampler, carrying the prompt's word "
                                                    "positions. Use it for the positive prompt.")],
        )

    @classmethod
    def execute(cls, clip, text) -> io.NodeOutput:
        return io.NodeOutput(encode_prompt(clip, text))
