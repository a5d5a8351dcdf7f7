"""One name per thing: socket types are not named like the core classes their values are, and the
socket type strings that saved workflows hold stay what they were."""

import pytest
from fixtures.pack import pack_node_list


@pytest.fixture(scope="module")
def schemas(host):
    nodes = pack_node_list()
    return {node.define_schema().node_id: node.define_schema() for node in nodes}


def test_socket_names_are_not_core_class_names(host):
    from nested_attention import nested_attention_core as core
    from nested_attention.nested_attention_core import subject, weights
    from nested_attention.nodes import sockets

    socket_types = {name for name, value in vars(sockets).items() if hasattr(value, "io_type")}
    assert socket_types, vars(sockets)
    core_names = set(vars(core)) | set(vars(subject)) | set(vars(weights))
    assert not socket_types & core_names, socket_types & core_names


def test_saved_workflows_socket_types_are_unchanged(schemas):
    """Workflows saved with earlier versions link these type strings; a renamed type would break them."""
    outputs = {node_id: [o.io_type for o in schema.outputs] for node_id, schema in schemas.items()}
    assert outputs["NestedAttentionLoader"] == ["NESTED_ATTENTION"]
    assert outputs["NestedAttentionSubject"] == ["NESTED_SUBJECT"]
    assert outputs["NestedAttentionLoadSubject"] == ["NESTED_SUBJECT"]
    inputs = {i.id: i.io_type for i in schemas["ApplyNestedAttention"].inputs}
    assert inputs["subject"] == "NESTED_SUBJECT"
