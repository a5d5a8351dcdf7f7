"""The host layer: the one place that knows ComfyUI's ModelPatcher, CLIP and CLIP vision objects.

The nodes, the trainer, the toy world and the benchmarks call these functions and nothing else of
it: encode a prompt with its word positions, encode reference images, ask what a model is, apply a
subject (or, for training, any binding) to a model, and (the trainer, which calls the UNet without
a sampler) build one step's transformer options. The nodes also load weights and subjects and encode
subjects on the host's devices (``encoder.py``). ``NestedAttentionPatch`` and ``host_attention`` (one
layer's patch, and the host's plain attention it wraps) are public for the benchmarks, which time one
layer outside a model.
"""
from .binding import Binding, SubjectBinding
from .checkpointing import checkpointed, is_checkpointed
from .encoder import (NODE_METHODS, HostWeights, check_node_subject, check_node_weights, encode_node_subject,
                      load_node_subject, load_node_weights)
from .model import attention_modules, check_fits_model, model_context_dim, model_family, model_layers, model_type
from .patch import (NestedAttentionPatch, applied_subjects, apply_binding, apply_subject, host_attention,
                    model_call_options, step_transformer_options)
from .prompt import encode_prompt, prompt_words
from .reference import reference_features
from .step import PROMPT_KEY, STEP_KEY, StepPrompts

__all__ = ["NODE_METHODS", "PROMPT_KEY", "STEP_KEY", "Binding", "HostWeights", "NestedAttentionPatch", "StepPrompts",
           "SubjectBinding", "applied_subjects", "apply_binding", "apply_subject", "attention_modules",
           "check_fits_model", "check_node_subject", "check_node_weights", "checkpointed", "encode_node_subject",
           "encode_prompt", "host_attention", "is_checkpointed", "load_node_subject", "load_node_weights",
           "model_call_options", "model_context_dim", "model_family", "model_layers", "model_type", "prompt_words",
           "reference_features", "step_transformer_options"]
