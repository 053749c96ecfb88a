"""capkit.store: atomic writes (a temporary file beside the destination, then a rename) and their formats."""

import json
import os

import pytest

from capkit import store


def test_json_is_standard_utf8_indented_with_a_final_newline(tmp_path):
    path = tmp_path / "new" / "folder" / "x.json"  # missing folders are created
    store.write_json(path, {"score": float("nan"), "inf": float("inf"), "rows": (1, 2.5), "text": "바다 🌊"})
    assert path.read_text(encoding="utf-8") == (
        '{\n "score": null,\n "inf": null,\n "rows": [\n  1,\n  2.5\n ],\n "text": "바다 🌊"\n}\n')
    assert store.update_json(path, {"score": 0.5}) == {"score": 0.5, "inf": None, "rows": [1, 2.5], "text": "바다 🌊"}
    assert json.loads(path.read_text(encoding="utf-8"))["score"] == 0.5


def test_jsonl_is_one_compact_line_per_object(tmp_path):
    store.write_jsonl(tmp_path / "p.jsonl", [{"a": "한글"}, {"b": [1, 2]}])
    assert (tmp_path / "p.jsonl").read_text(encoding="utf-8") == '{"a": "한글"}\n{"b": [1, 2]}\n'


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.json"
    store.write_text_atomic(path, "old")
    with pytest.raises(KeyboardInterrupt):
        with store.open_atomic(path) as f:
            f.write("half a file")
            raise KeyboardInterrupt  # killed mid-write
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_temporary_names_are_hidden_beside_the_file_and_never_shared(tmp_path):
    names = {store.temp_path(tmp_path / "last.pt") for _ in range(100)}
    assert len(names) == 100
    assert all(p.parent == tmp_path and p.name.startswith(f".last.pt.tmp{os.getpid()}.") for p in names)


def test_copy_and_publish(tmp_path):
    (tmp_path / "a").write_bytes(b"\x00\x01")
    store.copy_atomic(tmp_path / "a", tmp_path / "b")
    store.publish(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "b").read_bytes() == (tmp_path / "c").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]
