"""Atomic writes: a reader sees the old file or the new one, never half of one, and a failed write leaves no debris."""

from __future__ import annotations

import csv
import json
import os
import stat

import numpy as np
import pytest

from abqa.core.errors import AbqaError
from abqa.core.io import atomic_file, read_jsonl, write_jsonl_atomic, write_text_atomic
from abqa.core.records import ExportMetadata


def test_text_and_binary_files_are_replaced_whole(tmp_path):
    path = tmp_path / "sub" / "table.csv"   # the folder is made on the way
    with atomic_file(path, newline="") as handle:
        csv.writer(handle).writerows([["a", "b"], ["1", "x,y"]])
    assert list(csv.reader(path.open(newline=""))) == [["a", "b"], ["1", "x,y"]]

    archive = tmp_path / "pool.npz"
    with atomic_file(archive, "wb") as handle:
        np.savez(handle, ids=np.arange(3))
    with np.load(archive) as loaded:
        assert loaded["ids"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.npz", "sub"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "load.csv", "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(path) as handle:
            handle.write("half a ne")
            raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["load.csv"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_jsonl_is_rewritten_one_record_a_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"id": "stale"}\n')
    write_jsonl_atomic(path, [{"id": "q1", "prediction": "Zürich"}, {"id": "q2", "prediction": None}])
    assert list(read_jsonl(path)) == [{"id": "q1", "prediction": "Zürich"}, {"id": "q2", "prediction": None}]
    assert "Zürich" in path.read_text(encoding="utf-8")  # UTF-8 text, not \\u escapes


def test_only_write_modes_are_offered(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_file(tmp_path / "x", "a"):
            pass


@pytest.mark.parametrize("content, message", [
    (None, "missing; re-run `abqa export`"),
    ('{"arm": "bert", ', "not valid JSON.*truncated"),
    ("[1, 2]", "not a valid abqa metadata file"),
    ('{"arm": "bert"}', "not a valid abqa metadata file.*re-run `abqa export`"),
])
def test_export_metadata_read_names_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "abqa-metadata.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AbqaError, match=message) as error:
        ExportMetadata.read(path)
    assert str(error.value).startswith(str(path))


def test_export_metadata_round_trips(tmp_path):
    meta = ExportMetadata("bert", "standin:bert", "standin", True, "bert", inputs=["input_ids"])
    path = tmp_path / "abqa-metadata.json"
    path.write_text(json.dumps(meta.to_dict() | {"variant_check": {"argmax_agreement": 1.0}}))
    assert ExportMetadata.read(path) == meta
