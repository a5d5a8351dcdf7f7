"""Error messages that send a user to a node name a node the pack has, by its display name."""
import re

import pytest
from fixtures.pack import pack_node_list

from nested_attention.nested_attention_core import WeightsFormatError
from nested_attention.nested_attention_core.encoder import EncoderConfig, SubjectEncoder
from nested_attention.nested_attention_core.layers import LayerSpec
from nested_attention.nested_attention_core.subject import load_subject
from nested_attention.nested_attention_core.weights import load_weights, save_weights


@pytest.fixture(scope="module")
def display_names(host) -> set[str]:
    nodes = pack_node_list()
    return {node.define_schema().display_name for node in nodes}


def quoted_nodes(message: str, display_names: set[str]) -> list[str]:
    """The 'quoted' names in ``message`` that are display names of the pack's nodes."""
    return [name for name in re.findall(r"'([^']+)'", message) if name in display_names]


def test_a_weights_file_given_as_a_subject_names_the_loader_and_subject_nodes(tmp_path, display_names):
    path = tmp_path / "weights.safetensors"
    config = EncoderConfig(num_tokens=2, width=16, depth=1, heads=2, dim_head=8, image_feature_dim=8, output_dim=8)
    save_weights(path, SubjectEncoder(config, [LayerSpec("input", 1, 0, 8)]), "tiny")
    with pytest.raises(WeightsFormatError) as info:
        load_subject(path)
    named = quoted_nodes(str(info.value), display_names)
    assert len(named) == 2 and "Loader" in named[0] and "Subject" in named[1], (str(info.value), display_names)


def test_a_file_that_is_not_weights_names_the_trainer_that_writes_them(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights\n" * 20)
    with pytest.raises(WeightsFormatError) as info:
        load_weights(path)
    assert "nested-attention-train" in str(info.value) and "Train/Save" not in str(info.value), str(info.value)

