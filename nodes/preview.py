"""NestedAttentionPreview: does the subject's word bind to the subject? Heatmaps on the sampled image."""
import torch
from comfy_api.latest import io

from ..nested_attention_core.errors import NestedAttentionError
from .host.preview import KINDS, record_attention_maps
from .preview_render import render_panel
from .sockets import CATEGORY


class NestedAttentionPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NestedAttentionPreview",
            display_name="Nested Attention Preview (identity maps)",
            category=CATEGORY,
            description="Shows, for a sampled image, where each subject's word draws the cross-attention and where "
                        "its nested value changes the layer output, per layer group (down/mid/up) and over the noise "
                        "levels of the schedule: one panel per subject. It re-noises the image and runs the model "
                        "once per level with the positive prompt, so it costs nothing unless it is connected.",
            inputs=[
                io.Model.Input("model", tooltip="The model with the subjects applied (the output of the last 'Apply "
                                                "Nested Attention'), as given to the sampler."),
                io.Conditioning.Input("positive", tooltip="The positive prompt from 'Nested Attention Text Encode'."),
                io.Vae.Input("vae", tooltip="The VAE that decoded the image."),
                io.Image.Input("image", tooltip="The sampled image (after VAE Decode)."),
                io.Int.Input("steps", default=4, min=1, max=20,
                             tooltip="How many noise levels of the schedule to look at (columns), from high noise "
                                     "(layout) to low noise (details)."),
                io.Int.Input("probe_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=False,
                             tooltip="Seed of the noise added to the image at each level."),
            ],
            outputs=[
                io.Image.Output(display_name="maps", tooltip="One panel per subject (and image): rows are layer "
                                "groups x (word attention, output change), columns are noise levels."),
                io.Mask.Output(display_name="attention_map", tooltip="Per subject (and image), where the word draws "
                               "attention, averaged over groups and levels, scaled to 0..1."),
                io.Mask.Output(display_name="change_map", tooltip="Per subject (and image), where the nested value "
                               "changes the output, averaged over groups and levels, scaled to 0..1."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, vae, image, steps, probe_seed) -> io.NodeOutput:
        recorder, sigmas = record_attention_maps(model, positive, vae, image, steps, probe_seed)
        if not recorder.words:
            raise NestedAttentionError("model: no subject acted while probing the image. Connect the model from "
                                       "'Apply Nested Attention' and the positive prompt from 'Nested Attention Text "
                                       "Encode' that holds each subject's word")
        columns = [f"step {i + 1}/{len(sigmas)}  sigma {s:.2f}" for i, s in enumerate(sigmas)]
        panels, means = [], {kind: [] for kind in KINDS}
        for b in range(image.shape[0]):
            for word in recorder.words:
                rows = []
                for group in recorder.groups():
                    for kind in KINDS:
                        maps = [recorder.maps(word, group, step, kind) for step in range(len(sigmas))]
                        rows.append((group, kind, [None if m is None else m[b] for m in maps]))
                title = f"'{word}': word attention (P_qs*) and output change, per layer group and noise level"
                panels.append(render_panel(image[b, ..., :3].cpu(), title, columns, rows))
                for kind in KINDS:
                    found = [m for _, k, ms in rows if k == kind for m in ms if m is not None]
                    mean = torch.stack(found).mean(0)
                    means[kind].append(mean / mean.max() if mean.max() > 0 else mean)
        return io.NodeOutput(torch.stack(panels), torch.stack(means["attention"]), torch.stack(means["change"]))
