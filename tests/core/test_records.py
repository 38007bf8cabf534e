"""Records: schema, never silently overwritten, clear errors on corrupt files (fuzzed)."""

from __future__ import annotations


import pytest
from hypothesis import given, settings, strategies as st

from llm_efficiency_bench.core.records import Record, RecordError, read_record, validate, write_record


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
    write_record(tmp_path, _record())
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
        validate(value, "fuzz.json")
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
