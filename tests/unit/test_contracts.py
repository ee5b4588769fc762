"""Each contract's boundary: a malformed document is a clear error naming where, never a traceback.

Table-driven over ais.contracts: missing fields, wrong types, extra fields, numbers
out of range, huge nesting, text that is not JSON, lone surrogates.
"""

from __future__ import annotations

import json

import pytest

from ais.contracts import Plan
from ais.errors import BadInput


def good_plan() -> dict:
    return {"format": 1, "inputs_hash": "ab" * 32, "budget_bytes": 1000,
            "images": [{"key": "k0", "packages": ["a-1-1.x86_64"], "size_bytes": 10}],
            "serve": {"web-1": {"image": "k0", "remainder": ["b-1-1.x86_64"], "predicted_seconds": 3.5},
                      "db": {"image": None, "remainder": [], "predicted_seconds": 1.0}},
            "objective": 4.5, "bound": 4.5, "gap": 0.0, "status": "optimal", "solver": "highs",
            "baselines": {"greedy": {"objective": 4.5, "size_bytes": 10, "fits_budget": True}},
            "candidates": {"considered": 3, "pruned": 0, "priced": 0}, "warnings": []}


def edited(**changes) -> str:
    doc = good_plan()
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return json.dumps(doc)


DELETE = object()

PLAN_CASES = [
    ("missing field", edited(inputs_hash=DELETE), "inputs_hash"),
    ("wrong type", edited(budget_bytes="lots"), "$.budget_bytes"),
    ("negative size", edited(budget_bytes=-1), "$.budget_bytes"),
    ("huge integer", edited(budget_bytes=2**70), "$.budget_bytes"),
    ("extra field", edited(surprise=1), "surprise"),
    ("extra nested field", edited(serve__db__colour="red"), "colour"),
    ("other format", edited(format=2), "$.format"),
    ("image it does not keep", edited(serve__db__image="k9"), "k9"),
    ("null list", edited(images=None), "$.images"),
    ("not an object", "[1, 2, 3]", "Expected `object`"),
    ("not JSON", "{plan", "not valid JSON"),
    ("empty", "", "not valid JSON"),
    ("nested 100,000 deep", "[" * 100_000 + "]" * 100_000, "the plan file"),
    ("lone surrogate", edited(solver="\ud800"), "the plan file"),
]


@pytest.mark.parametrize("text, words", [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_malformed_plan_files_are_bad_input(text, words):
    with pytest.raises(BadInput) as caught:
        Plan.from_json(text)
    assert words in str(caught.value)


def test_a_good_plan_round_trips():
    plan = Plan.from_json(json.dumps(good_plan()))
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.size_bytes == 10 and plan.serve["db"].image is None
