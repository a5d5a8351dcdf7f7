"""The toy workflow (what `make demo` queues) holds exactly the demo rule's choices: the evaluation's
first pair as references, the evaluation's seed of that image, strength 1 (evaluation_two.demo_choice)."""
from __future__ import annotations

import json
from pathlib import Path

from nested_attention.toyworld.evaluation import EvalConfig
from nested_attention.toyworld.evaluation_two import demo_choice
from nested_attention.toyworld.example_references import REFERENCES
from nested_attention.toyworld.identity import PERSON, PET

WORKFLOW = Path(__file__).resolve().parents[2] / "toyworld" / "workflows" / "toyworld_two_subjects.json"


def widgets(node_type: str) -> list:
    return [node["widgets_values"] for node in json.loads(WORKFLOW.read_text())["nodes"] if node["type"] == node_type]


def test_the_workflow_is_the_demo_rules_choice():
    choice = demo_choice(EvalConfig())
    assert sorted(REFERENCES.values()) == sorted([(PERSON, choice.person_id), (PET, choice.pet_id)])
    (seed, control, *_), = widgets("KSampler")
    assert (seed, control) == (choice.seed, "fixed")
    assert [values[0] for values in widgets("ApplyNestedAttention")] == [choice.strength] * 2
    assert widgets("NestedAttentionTextEncode") == [[choice.text]]
