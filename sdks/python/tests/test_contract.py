"""The SDK's types against the API document: generated from it, up to date, covering every
field, and parsing the shared fixtures back to the same JSON."""

import json
import subprocess
import sys

import pytest

from msb import _models
from conftest import REPO

FIXTURES = sorted((REPO / "sdks" / "fixtures").glob("*.json"))


def test_generated_types_are_up_to_date():
    check = subprocess.run([sys.executable, str(REPO / "sdks" / "codegen.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_every_type_covers_every_field_of_its_schema(document):
    schemas = document["components"]["schemas"]
    for name in ("SandboxInfo", "RunInfo", "SandboxConfig", "MetricsReport", "CapacityReport",
                 "SandboxHeadroom", "WaitResponse", "HistoryResponse", "ErrorBody", "ExecResponse",
                 "ExecRequest", "DrainRequest", "StopRequest", "KillRequest"):
        model = getattr(_models, name)
        assert set(model.FIELDS) == set(schemas[name]["properties"]), name
        assert set(model.__dataclass_fields__) == set(schemas[name]["properties"]), name


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixtures_parse_and_write_back_unchanged(path):
    model = getattr(_models, path.stem)
    for example in json.loads(path.read_text()).values():
        assert model.from_json(example).to_json() == example


def test_nullable_metrics_are_optional(document):
    report = _models.MetricsReport.from_json(
        json.loads((REPO / "sdks" / "fixtures" / "MetricsReport.json").read_text())["nulls"])
    schema = document["components"]["schemas"]["MetricsReport"]["properties"]
    for field, prop in schema.items():
        if "null" in (prop.get("type") or []):
            assert getattr(report, field) is None, field
