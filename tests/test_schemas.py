"""Every command's JSON object against its JSON Schema in docs/schemas/ (the contract the docs
publish), and every schema id the code writes has one. The schemas were drafted from these
samples once (tests/schema_samples.py --write) and are maintained by hand since."""

import glob
import json
import os
import re

import jsonschema
import pytest
from data import ROOT
from schema_samples import SCHEMAS, samples


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    return samples(str(tmp_path_factory.mktemp("schemas")))


def test_every_schema_id_in_the_code_has_a_published_schema():
    ids = set()
    for path in glob.glob(os.path.join(ROOT, "cond", "**", "*.py"), recursive=True):
        ids |= set(re.findall(r"[\"'](cond\.[a-z-]+/\d+)[\"']", open(path, encoding="utf-8").read()))
    published = {json.load(open(p))["$id"] for p in glob.glob(os.path.join(SCHEMAS, "*.json"))}
    assert ids <= published, ids - published


def test_every_result_validates_against_its_schema(documents):
    assert len(documents) >= 9
    for schema_id, docs in documents.items():
        schema = json.load(open(os.path.join(SCHEMAS, schema_id.replace("/", "-") + ".json")))
        for doc in docs:
            jsonschema.validate(doc, schema)


def test_a_schema_catches_a_field_that_drifts(documents):
    schema = json.load(open(os.path.join(SCHEMAS, "cond.compress-3.json")))
    doc = dict(documents["cond.compress/3"][0])
    jsonschema.validate(doc, schema)
    for broken in ({**doc, "extra": 1}, {k: v for k, v in doc.items() if k != "totals"}, {**doc, "schema": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
