"""Records: the version-1 JSON Schema (every committed record passes it), never silently overwritten, one-line
errors naming the file and the field (fuzzed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from llm_efficiency_bench.core.run_folder import RunFolder
from llm_efficiency_bench.core.records import (SCHEMA_FILE, SCHEMA_VERSION, Record, RecordError, check_record,
                                               read_record, write_record)
from tests.conftest import REPO


def _record() -> Record:
    r = Record("streaming_llm", "ppl_table1", "cpu")
    r.add("ppl.dense", 12.5, "ppl", "lower")
    r.add("x", float("nan"), "x", "none", note="NaN is stored as null")
    return r


def test_roundtrip_and_history(tmp_path):
    p = write_record(tmp_path, _record())
    data = read_record(p)
    assert data["metrics"]["ppl.dense"] == {"value": 12.5, "unit": "ppl", "direction": "lower", "kind": "quality"}
    assert data["metrics"]["x"]["value"] is None
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_record(tmp_path, _record())
    RunFolder(tmp_path).write_record(_record())  # the run folder keeps the earlier run
    assert len(list((tmp_path / "history").iterdir())) == 1


def test_bad_direction_is_refused():
    with pytest.raises(ValueError, match="direction"):
        _record().add("m", 1.0, "x", "up")  # type: ignore[arg-type]


@pytest.mark.parametrize("text,msg", [
    ("{", "not valid JSON"),
    ('{"schema_version": 1, "paper": "p", "experiment": "e", "profile": "cpu", "metrics": {"m": {"value": "1", '
     '"unit": "u", "direction": "lower"}}}', "not a number"),
    ('{"schema_version": 7}', "schema_version"),
    ("[]", "not a JSON object"),
])
def test_corrupt_records_name_the_file(tmp_path, text, msg):
    p = tmp_path / "record.json"
    p.write_text(text)
    with pytest.raises(RecordError, match=msg) as e:
        read_record(p)
    assert str(p) in str(e.value)


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_reader_fuzz_either_valid_or_record_error(value):
    try:
        check_record(value, "fuzz.json")
    except RecordError as e:
        assert str(e).startswith("fuzz.json:")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_reader_fuzz_bytes(tmp_path_factory, blob):
    p = tmp_path_factory.mktemp("r") / "record.json"
    p.write_bytes(blob)
    try:
        read_record(p)
    except RecordError:
        pass


def test_the_schema_file_is_a_draft_2020_12_schema():
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_every_committed_record_validates():
    """Every record.json under results/ (the archived history too) is a valid version-1 record."""
    paths = sorted((REPO / "results").rglob("record.json"))
    assert {p.relative_to(REPO / "results").parts[0] for p in paths} >= {"streaming_llm", "fourier_vlm",
                                                                           "adaptive_step", "bench"}
    bad = []
    for p in paths:
        try:
            check_record(json.loads(p.read_text()), str(p))
        except RecordError as e:
            bad.append(str(e))
    assert not bad, "\n".join(bad)


def test_a_record_as_written_validates_with_every_optional_field(tmp_path):
    r = _record()
    r.add("lat", 3.5, "ms", "lower", stderr=0.25)
    r.artifacts = {"tables": ["t.md"], "csv": ["t.csv", "sub/rows.csv"]}
    r.config, r.extra, r.duration_s = {"scale": {"cache_sizes": [16, 32]}, "seed": 0}, {"tau": 0.5}, 12.0
    r.env = {"git_sha": None, "git_dirty": None, "code_hash": "0123456789abcdef", "packages": {"gguf": None},
             "cpu_count": 2, "code_execution": {"bwrap": 3}}
    data = read_record(write_record(tmp_path, r))
    assert data["metrics"]["lat"]["stderr"] == 0.25 and data["metrics"]["lat"]["kind"] == "timing"


BROKEN = {  # id: (change to a valid record, where the error points, what it says)
    "missing paper": (lambda d: d.pop("paper"), "record", "missing 'paper'"),
    "empty profile": (lambda d: d.update(profile=""), "profile", "is empty"),
    "value text": (lambda d: d["metrics"]["ppl.dense"].update(value="12.5"), "metrics['ppl.dense'].value",
                   "'12.5' is not a number or null"),
    "value boolean": (lambda d: d["metrics"]["ppl.dense"].update(value=True), "metrics['ppl.dense'].value",
                      "True is not a number or null"),
    "direction": (lambda d: d["metrics"]["ppl.dense"].update(direction="up"), "metrics['ppl.dense'].direction",
                  "'up' is not one of lower, higher, none"),
    "kind": (lambda d: d["metrics"]["ppl.dense"].update(kind="speed"), "metrics['ppl.dense'].kind",
             "'speed' is not one of quality, timing, count, memory"),
    "no unit": (lambda d: d["metrics"]["ppl.dense"].pop("unit"), "metrics['ppl.dense']", "missing 'unit'"),
    "unknown metric field": (lambda d: d["metrics"]["ppl.dense"].update(units="ppl"), "metrics['ppl.dense']",
                             "unknown field 'units'"),
    "stderr text": (lambda d: d["metrics"]["ppl.dense"].update(stderr="0.1"), "metrics['ppl.dense'].stderr",
                    "'0.1' is not a number or null"),
    "metrics list": (lambda d: d.update(metrics=[]), "metrics", "[] is not an object"),
    "env list": (lambda d: d.update(env=[]), "env", "[] is not an object"),
    "git_dirty text": (lambda d: d["env"].update(git_dirty="no"), "env.git_dirty", "'no' is not a boolean or null"),
    "artifacts not a list": (lambda d: d["artifacts"].update(csv="rows.csv"), "artifacts.csv",
                             "'rows.csv' is not a list"),
    "artifact path": (lambda d: d["artifacts"].update(csv=["a.csv", 3]), "artifacts.csv[1]", "3 is not a string"),
    "negative duration": (lambda d: d.update(duration_s=-1), "duration_s", "-1 is below 0"),
    "unknown top field": (lambda d: d.update(metric={}), "record", "unknown field 'metric'"),
    "version true": (lambda d: d.update(schema_version=True), None, "schema_version True is not 1"),
}


@pytest.mark.parametrize("change,where,what", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_record_is_refused_in_one_line_naming_the_field(tmp_path, change, where, what):
    path = write_record(tmp_path, _record())
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError) as e:
        read_record(path)
    head = f"{path}: {where}: " if where else f"{path}: "
    msg = str(e.value)
    assert msg.startswith(head + what) and "\n" not in msg, msg


def test_of_several_problems_the_shallowest_is_named():
    data = _record().to_dict()
    data["metrics"]["ppl.dense"]["unit"] = 3
    del data["experiment"]
    with pytest.raises(RecordError, match=r"^r\.json: record: missing 'experiment'$"):
        check_record(data, "r.json")
