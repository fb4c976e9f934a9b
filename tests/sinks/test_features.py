"""The sample type language: one declaration, read the same way by datasets, Croissant and Energon."""
from __future__ import annotations

import pytest
from datasets import Features, Image, List, Value

from vlprep.pipeline.datasets import coco, imagenet, vg
from vlprep.pipeline.datasets.registry import RECIPES
from vlprep.pipeline.sinks.features import (BOOL, FLOAT64, INT64, STRING, Field, SampleSchema, croissant_type,
                                             energon_field_map, energon_sample_type, hf_features, list_of, problems)

from ..helpers import example_sample

SCHEMAS = {"coco": coco.SAMPLE, "vg": vg.REGIONS, "vg-concat": vg.CONCAT, "imagenet": imagenet.SAMPLE}


def test_hf_features_are_what_datasets_reads_for_the_members():
    schema = SampleSchema(fields=(Field("b", list_of(list_of(INT64, 4)), ""), Field("a", STRING, ""),
                                  Field("c", BOOL, ""), Field("d", FLOAT64, "")), label="class index")
    expected = Features({"__key__": Value("string"), "__url__": Value("string"), "cls": Value("int64"),
                         "jpg": Image(), "json": {"a": Value("string"), "b": List(List(Value("int64"), length=4)),
                                                  "c": Value("bool"), "d": Value("float64")}})
    assert Features._from_yaml_list(hf_features(schema)) == expected


def test_croissant_types_give_array_shapes():
    assert croissant_type(STRING) == {"dataType": "sc:Text"}
    assert croissant_type(list_of(list_of(INT64))) == {"dataType": "cr:Int64", "isArray": True, "arrayShape": "-1,-1"}
    assert croissant_type(vg.CONCAT.field("boxes").type)["arrayShape"] == "-1,-1,4"


def test_energon_field_maps_and_sample_types():
    assert energon_field_map(coco.SAMPLE) == {"image": "jpg", "caption": "json[texts][0]"}
    assert energon_sample_type(coco.SAMPLE) == "CaptioningSample"
    assert energon_field_map(imagenet.SAMPLE) == {"image": "jpg", "label": "cls", "label_name": "json[class_name]"}
    assert energon_sample_type(imagenet.SAMPLE) == "ImageClassificationSample"


def test_a_caption_path_must_lead_to_a_string():
    with pytest.raises(ValueError, match="caption path"):
        SampleSchema(fields=(Field("texts", list_of(STRING), ""),), caption=("texts",))
    with pytest.raises(ValueError, match="duplicate"):
        SampleSchema(fields=(Field("a", STRING, ""), Field("a", INT64, "")))


def test_problems_name_missing_extra_and_mistyped_keys():
    schema = SampleSchema(fields=(Field("n", INT64, ""), Field("box", list_of(INT64, 4), ""), Field("ok", BOOL, "")))
    assert problems(schema, {"n": 1, "box": [1, 2, 3, 4], "ok": False}) == []
    found = problems(schema, {"n": True, "box": [1, 2, 3], "extra": 1})
    assert found == ["missing key 'ok'", "undeclared key 'extra'", "n: expected int64, got bool True",
                     "box: expected 4 items, got 3"]
    assert problems(schema, {"n": None, "box": [1, 2, 3, "4"], "ok": 1})[0] == "n: expected int64, got NoneType None"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_declared_schema_accepts_its_own_examples(name):
    for index in range(5):
        meta, _, _ = example_sample(SCHEMAS[name], "key", index)
        assert problems(SCHEMAS[name], meta) == []


def test_every_image_recipe_declares_a_sample_and_about():
    declared = {r.name for r in RECIPES if r.sample is not None and r.about is not None}
    assert declared >= {"coco", "vg", "cc3m", "imagenet"}
