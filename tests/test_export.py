"""Export stage: ONNX graphs that reproduce PyTorch, valid Triton configs, atomic writes and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from tritonclient.grpc import model_config_pb2

from abqa.cli import main
from abqa.core.config import ArmSpec
from abqa.core.errors import AbqaError
from abqa.core.repository import METADATA_FILENAME
from abqa.export.pipeline import ExportOptions, export_arms
from abqa.export.triton_config import ONNX_TO_TRITON_DTYPE, parse_config_pbtxt
from conftest import tiny_checkpoint

QUESTION = "What is the capital of France?"
CONTEXT = "Paris is the capital and most populous city of France, with an estimated population of two million."


def run_cli(*argv: str) -> int:
    return main(["export", *argv])


def torch_and_onnx_logits(checkpoint: Path, onnx_path: Path, batch: dict) -> tuple[list, list]:
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(batch[i.name], dtype=np.int64) for i in session.get_inputs()}
    with torch.inference_mode():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return [out.start_logits.numpy(), out.end_logits.numpy()], session.run(["start_logits", "end_logits"], feeds)


@pytest.mark.parametrize("arm", ["bert", "distilbert"])
def test_exported_graph_reproduces_pytorch_logits(tiny_repository, tiny_checkpoints, arm):
    tokenizer = AutoTokenizer.from_pretrained(tiny_repository / arm / "tokenizer")
    # A batch of two different lengths: batch and sequence axes must both be dynamic.
    batch = tokenizer([QUESTION, "Where?"], [CONTEXT, "In Paris."], padding=True, return_tensors="np")
    expected, got = torch_and_onnx_logits(tiny_checkpoints[arm], tiny_repository / arm / "1" / "model.onnx", batch)
    for want, have in zip(expected, got):
        assert have.shape == want.shape == batch["input_ids"].shape
        np.testing.assert_allclose(have, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arm", ["bert", "distilbert"])
def test_config_pbtxt_parses_and_matches_the_onnx_graph(tiny_repository, arm):
    config = parse_config_pbtxt((tiny_repository / arm / "config.pbtxt").read_text())
    graph = onnx.load(str(tiny_repository / arm / "1" / "model.onnx"), load_external_data=False).graph

    assert config.name == arm and config.backend == "onnxruntime"
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0   # a lone request never waits for company
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for tensor, value in zip(declared, actual):
            assert model_config_pb2.DataType.Name(tensor.data_type) == ONNX_TO_TRITON_DTYPE[value.type.tensor_type.elem_type]
            assert list(tensor.dims) == [-1]  # sequence axis dynamic; batch axis implied by max_batch_size
            assert value.type.tensor_type.shape.dim[0].dim_param  # batch axis is symbolic in the graph too


def test_distilbert_has_no_token_type_ids_and_bert_has(tiny_repository):
    def inputs(arm):
        return [t.name for t in parse_config_pbtxt((tiny_repository / arm / "config.pbtxt").read_text()).input]

    assert inputs("distilbert") == ["input_ids", "attention_mask"]
    assert inputs("bert") == ["input_ids", "attention_mask", "token_type_ids"]
    meta = json.loads((tiny_repository / "distilbert" / METADATA_FILENAME).read_text())
    assert meta["inputs"] == ["input_ids", "attention_mask"]


def test_metadata_records_provenance_sizes_and_versions(tiny_repository, tiny_checkpoints):
    meta = json.loads((tiny_repository / "bert" / METADATA_FILENAME).read_text())
    model_file = tiny_repository / "bert" / "1" / "model.onnx"
    assert meta["source_kind"] == "local" and meta["source"] == str(tiny_checkpoints["bert"].resolve())
    assert meta["standin"] is False
    assert meta["onnx_file_size"] == model_file.stat().st_size
    assert re.fullmatch(r"[0-9a-f]{64}", meta["onnx_sha256"])
    assert meta["parameters"] == sum(
        p.numel() for p in AutoModelForQuestionAnswering.from_pretrained(tiny_checkpoints["bert"]).parameters()
    )
    assert meta["opset"] >= 11 and meta["num_layers"] == 2
    assert meta["versions"]["onnxruntime"] == ort.__version__
    assert meta["validation_max_abs_diff"] <= 1e-4


def test_offline_standins_are_marked_and_loud(tmp_path, capsys, monkeypatch):
    import abqa.export.sources as sources

    monkeypatch.setattr(  # published sizes are the slow test's job; this one checks the flagging
        sources, "build_standin_checkpoint",
        lambda arch, out, seed=0, config_overrides=None: tiny_checkpoint(arch, out, seed),
    )
    assert run_cli("--offline", "--arm", "distilbert", "--model-repository", str(tmp_path / "repo")) == 0
    out = capsys.readouterr().out
    assert "OFFLINE STAND-IN" in out and "ACCURACY IS MEANINGLESS" in out
    meta = json.loads((tmp_path / "repo" / "distilbert" / METADATA_FILENAME).read_text())
    assert meta["standin"] is True and meta["source_kind"] == "standin"


def test_existing_arm_is_kept_unless_force(tmp_path, tiny_checkpoints):
    spec = [ArmSpec("distilbert", str(tiny_checkpoints["distilbert"]))]
    repo = tmp_path / "repo"
    export_arms(spec, ExportOptions(repository=repo))
    model = repo / "distilbert" / "1" / "model.onnx"
    model.write_bytes(b"marker")  # any re-export would overwrite this
    export_arms(spec, ExportOptions(repository=repo))
    assert model.read_bytes() == b"marker"
    export_arms(spec, ExportOptions(repository=repo, force=True))
    assert model.stat().st_size > 1000


def test_a_crash_mid_write_leaves_the_old_arm_and_no_partial_one(tmp_path, tiny_checkpoints, monkeypatch):
    repo = tmp_path / "repo"
    spec = [ArmSpec("bert", str(tiny_checkpoints["bert"]))]
    export_arms(spec, ExportOptions(repository=repo))
    before = {p.relative_to(repo): p.stat().st_size for p in repo.rglob("*")}

    import abqa.export.pipeline as pipeline

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "write_json_atomic", crash)  # the last step of staging an arm
    with pytest.raises(RuntimeError, match="disk full"):
        export_arms(spec, ExportOptions(repository=repo, force=True))
    with pytest.raises(RuntimeError):
        export_arms([ArmSpec("other-bert", str(tiny_checkpoints["bert"]))], ExportOptions(repository=repo))

    assert {p.relative_to(repo): p.stat().st_size for p in repo.rglob("*")} == before
    assert not (repo / "other-bert").exists()
    assert not list(tmp_path.glob(".repo.staging/*"))


def edit_initializer(name: str, change):
    """A graph edit: replace the values of initializer `name` by change(values)."""
    from onnx import numpy_helper

    def edit(model: onnx.ModelProto) -> None:
        tensor = next(init for init in model.graph.initializer if init.name == name)
        tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor)), name))

    return edit


@pytest.mark.parametrize("edit, found_by", [
    # Every logit off by 0.01: optimum's check finds it.
    (edit_initializer("qa_outputs.bias", lambda bias: bias + np.float32(1e-2)),
     "on optimum's check at batch 2 x 48 tokens.*max diff"),
    # Wrong only from position 48 on: optimum's short dummy inputs cannot see it, the real samples (71 tokens) do.
    (edit_initializer("bert.embeddings.position_embeddings.weight", lambda rows: np.concatenate([rows[:48], -rows[48:]])),
     r"max \|logit diff\| .* > 1e-04 on the validation samples"),
])
def test_a_graph_that_disagrees_with_pytorch_fails_the_export_and_writes_nothing(
        tmp_path, tiny_checkpoints, monkeypatch, edit, found_by):
    import abqa.export.onnx_export as onnx_export

    real_export = onnx_export.export_onnx

    def export_then_edit(*args, **kwargs):
        path = real_export(*args, **kwargs)
        model = onnx.load(str(path))
        edit(model)
        onnx.save(model, str(path))
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", export_then_edit)
    repo = tmp_path / "repo"
    with pytest.raises(AbqaError, match=f"^arm 'bert': the ONNX graph disagrees with PyTorch.*{found_by}.*"
                                        "nothing was written$"):
        export_arms([ArmSpec("bert", str(tiny_checkpoints["bert"]))], ExportOptions(repository=repo))
    assert not (repo / "bert").exists() and not list(tmp_path.glob(".repo.staging/*"))


def test_variants_int8_and_optimized_are_extra_arms(tmp_path, tiny_checkpoints):
    repo = tmp_path / "repo"
    results = export_arms(
        [ArmSpec("bert", str(tiny_checkpoints["bert"]))],
        ExportOptions(repository=repo, quantize=("int8",), optimize=("O1",)),
    )
    assert [m.arm for m in results] == ["bert", "bert-O1", "bert-int8"]
    int8 = onnx.load(str(repo / "bert-int8" / "1" / "model.onnx"))
    assert any(node.op_type in {"MatMulInteger", "DynamicQuantizeLinear"} for node in int8.graph.node)
    for arm in ("bert-O1", "bert-int8"):
        meta = json.loads((repo / arm / METADATA_FILENAME).read_text())
        assert meta["base_arm"] == "bert" and meta["variant"] == arm.split("-")[1]
        assert 0.0 <= meta["variant_check"]["argmax_agreement"] <= 1.0
        assert parse_config_pbtxt((repo / arm / "config.pbtxt").read_text()).name == arm


def test_unknown_arm_exits_2_with_the_known_names(tmp_path, capsys):
    assert run_cli("--arm", "gpt5", "--model-repository", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown arm 'gpt5'" in err and "distilbert" in err and "NAME=SOURCE" in err


def test_checkpoint_without_qa_head_exits_2(tmp_path, capsys):
    from transformers import BertConfig, BertForMaskedLM

    checkpoint = tmp_path / "mlm"
    BertForMaskedLM(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)) \
        .save_pretrained(checkpoint)
    assert run_cli("--arm", f"mlm={checkpoint}", "--model-repository", str(tmp_path / "repo")) == 2
    err = capsys.readouterr().err
    assert "not a question-answering checkpoint" in err and "BertForMaskedLM" in err
    assert not (tmp_path / "repo" / "mlm").exists()


def test_unwritable_repository_exits_2(tmp_path, tiny_checkpoints, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = run_cli("--arm", f"bert={tiny_checkpoints['bert']}", "--model-repository", str(blocker / "repo"))
    assert code == 2
    assert f"model repository {blocker / 'repo'}" in capsys.readouterr().err


def test_missing_local_folder_and_unreachable_hub_name_the_source(tmp_path, capsys, monkeypatch):
    assert run_cli("--arm", "x=./no/such/folder", "--model-repository", str(tmp_path)) == 2
    assert "./no/such/folder does not exist" in capsys.readouterr().err

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: fails at once, never the internet
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert run_cli("--arm", "bert=someone/no-such-model", "--model-repository", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "someone/no-such-model" in err and "--offline" in err


def test_invalid_arm_name_is_rejected():
    with pytest.raises(AbqaError, match="not valid"):
        ArmSpec.parse("../evil=some/model")


@pytest.mark.slow
def test_offline_defaults_export_published_architectures(tmp_path):
    """`abqa export --offline` as a new user runs it: 12-layer BERT-base and 6-layer DistilBERT stand-ins."""
    assert run_cli("--offline", "--model-repository", str(tmp_path / "repo")) == 0
    for arm, layers in (("bert", 12), ("distilbert", 6)):
        graph = onnx.load(str(tmp_path / "repo" / arm / "1" / "model.onnx"), load_external_data=False).graph
        layer_ids = {int(m.group(1)) for n in graph.node if (m := re.search(r"/layer\.(\d+)/", n.name))}
        assert layer_ids == set(range(layers)), arm
        meta = json.loads((tmp_path / "repo" / arm / METADATA_FILENAME).read_text())
        assert meta["standin"] is True and meta["hidden_size"] == 768 and meta["num_layers"] == layers


@pytest.mark.parametrize("arm, source, expected", [
    ("distilbert", "distilbert/distilbert-base-uncased-distilled-squad", "distilbert"),
    ("bert", "csarron/bert-base-uncased-squad-v1", "bert"),
    ("mbert", "salti/bert-base-multilingual-cased-finetuned-squad", "bert"),
    ("xlmr", "deepset/xlm-roberta-base-squad2", None),
    ("roberta", "deepset/roberta-base-squad2", None),
    ("albert", "twmkn9/albert-base-v2-squad2", None),
])
def test_a_standin_is_only_offered_for_the_architectures_it_really_has(arm, source, expected):
    """RoBERTa and friends contain "bert" in their names; a BERT stand-in would misstate their size and latency."""
    from abqa.export.standins import standin_architecture_for

    if expected is None:
        with pytest.raises(AbqaError, match=f"arm '{arm}'.*no offline stand-in"):
            standin_architecture_for(arm, source)
    else:
        assert standin_architecture_for(arm, source) == expected
