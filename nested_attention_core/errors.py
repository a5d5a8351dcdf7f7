"""Error types of Nested Attention. Every message names the input at fault and how to fix it."""


class NestedAttentionError(ValueError):
    """Base class: bad input given to Nested Attention (weights, subjects, prompts, images)."""


class WeightsFormatError(NestedAttentionError):
    """A weight or subject file is unreadable, truncated, of another format, or inconsistent."""


class ModelMismatchError(NestedAttentionError):
    """Weights or a subject do not fit the model they are applied to (base family, layers, widths)."""


class SubjectWordError(NestedAttentionError):
    """A subject word is missing from the prompt, empty, or bound twice."""


class ReferenceImageError(NestedAttentionError):
    """A reference image or mask cannot be used as given."""


class RegionMaskError(NestedAttentionError):
    """A region mask (where a subject acts in the image) does not fit the images being sampled."""


class MethodError(NestedAttentionError):
    """Weights or a subject of another method (a toy-world baseline) given where nested attention is expected."""


class UnsupportedModelError(ModelMismatchError):
    """A model the pack cannot personalize: no UNet cross-attention (attn2) layers (Flux, SD3, other DiTs)."""
