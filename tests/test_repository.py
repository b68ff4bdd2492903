"""The model repository's layout, spelled out once: what `abqa export` writes is where the other stages look."""

from __future__ import annotations

from abqa.core.repository import ArmPaths, arm_folders


def test_arm_paths_are_where_export_writes_and_triton_reads(tiny_repository):
    paths = ArmPaths(tiny_repository, "bert")
    arm = tiny_repository / "bert"
    assert (paths.folder, paths.config, paths.version_dir, paths.model, paths.metadata, paths.tokenizer) == (
        arm, arm / "config.pbtxt", arm / "1", arm / "1" / "model.onnx", arm / "abqa-metadata.json", arm / "tokenizer")
    assert paths.config.is_file() and paths.model.is_file() and paths.metadata.is_file()
    assert (paths.tokenizer / "tokenizer.json").is_file()
    assert paths.exported and not ArmPaths(tiny_repository, "gpt5").exported
    assert paths.version_dirs() == [paths.version_dir]


def test_version_dirs_are_numeric_folders_newest_first(tmp_path):
    arm = tmp_path / "bert"
    for name in ("1", "10", "2", "tokenizer"):
        (arm / name).mkdir(parents=True)
    (arm / "3").write_text("a file, not a version")
    assert [path.name for path in ArmPaths(tmp_path, "bert").version_dirs()] == ["10", "2", "1"]
    assert ArmPaths(tmp_path, "missing").version_dirs() == []


def test_arm_folders_lists_sub_folders_by_name(tmp_path):
    assert arm_folders(tmp_path / "missing") == []
    for name in ("distilbert", "bert"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("not an arm")
    assert arm_folders(str(tmp_path)) == [ArmPaths(tmp_path, "bert"), ArmPaths(tmp_path, "distilbert")]
