"""ApplyNestedAttention: patch the model's cross-attention with one subject; chain one per subject."""
import math

from comfy_api.latest import io

from ..nested_attention_core.families import supported_models
from .host import apply_subject, check_node_subject
from .sockets import CATEGORY, SubjectSocket


def model_tooltip() -> str:
    """Names every model family the pack knows (built in, and any a pack registered), and what it does not support."""
    return f"The diffusion model to personalize: {supported_models()}. The input model is not changed."


class ApplyNestedAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ApplyNestedAttention",
            display_name="Apply Nested Attention (personalize)",
            category=CATEGORY,
            description="Personalizes the model with a subject's identity: the subject's word in the positive prompt "
                        "takes a per-pixel value from the reference images (nested attention, a finer-grained "
                        "alternative to IP-Adapter). Chain one node per subject.",
            inputs=[
                io.Model.Input("model", tooltip=model_tooltip()),
                SubjectSocket.Input("subject", tooltip="A subject from 'Nested Attention Subject' or "
                                                       "'Nested Attention Load Subject'."),
                io.Float.Input("weight", default=1.0, min=0.0, max=5.0, step=0.05,
                               tooltip="Strength lambda: scales the subject word's share of the cross-attention. "
                                       "1.0 is the paper's method; lower keeps more of the prompt, higher more "
                                       "of the subject."),
                io.Float.Input("start_at", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling schedule at which the subject starts acting."),
                io.Float.Input("end_at", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling schedule at which the subject stops acting."),
                io.Mask.Input("attn_mask", optional=True,
                              tooltip="Optional region of the image where the subject acts (white = subject). "
                                      "Any size: it is resized to each layer's grid."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model; the input model is left unchanged.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, weight):
        """Checked when the prompt is queued, shown on this node (the frontend would otherwise clamp an
        out-of-range number without a word: web/nested_attention.js lifts its clamp). start_at and end_at
        get ComfyUI's own range check, on this node too."""
        return weight_problem(weight) or True

    @classmethod
    def execute(cls, model, subject, weight, start_at, end_at, attn_mask=None) -> io.NodeOutput:
        check_node_subject(subject)
        region = None if attn_mask is None else (attn_mask[None] if attn_mask.ndim == 2 else attn_mask)
        hidden = getattr(cls, "hidden", None)
        node = f"Apply Nested Attention node #{hidden.unique_id}" if hidden is not None and hidden.unique_id else None
        return io.NodeOutput(apply_subject(model, subject, weight, start_at, end_at, region, node=node))


WEIGHT_RANGE = (0.0, 5.0)


def weight_problem(weight) -> str | None:
    """None if the weight is usable, else a message naming the input, its value and its range."""
    low, high = WEIGHT_RANGE
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or not low <= weight <= high:
        return f"weight is {weight!r}: type a value from {low:g} to {high:g} (1.0 is the paper's method)"
    return None
