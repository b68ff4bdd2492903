"""`abqa export`: each arm from its source to a validated ONNX model in the Triton model repository."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from abqa.core.config import MAX_SEQ_LENGTH, ArmSpec
from abqa.core.errors import AbqaError
from abqa.core.io import sha256_file, write_json_atomic
from abqa.core.machine import package_versions
from abqa.core.records import ExportMetadata
from abqa.core.repository import ArmPaths
from abqa.export import onnx_export, variants
from abqa.export.repository import arm_exists, ensure_writable, read_arm_metadata, staged_arm
from abqa.export.sources import ResolvedCheckpoint, resolve_checkpoint
from abqa.export.triton_config import (
    BatchingConfig,
    InstanceConfig,
    TritonModelConfig,
    render_config_pbtxt,
    tensor_specs_from_onnx,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    repository: Path = Path("model_repository")
    offline: bool = False
    force: bool = False
    optimize: tuple[str, ...] = ()           # extra arms, e.g. ("O2",) -> bert-O2
    quantize: tuple[str, ...] = ()           # extra arms, e.g. ("int8",) -> bert-int8
    opset: int | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    instances: InstanceConfig = field(default_factory=InstanceConfig)
    seed: int = 0
    standin_overrides: dict | None = None    # tests: tiny stand-in configs


def export_arms(specs: list[ArmSpec], options: ExportOptions) -> list[ExportMetadata]:
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise AbqaError(f"arm names must be unique, got {names}")
    ensure_writable(options.repository)
    results: list[ExportMetadata] = []
    for spec in specs:
        results.extend(export_arm(spec, options))
    return results


def export_arm(spec: ArmSpec, options: ExportOptions) -> list[ExportMetadata]:
    """Export one arm and its requested variants; arms already in the repository are kept unless --force."""
    wanted = [spec.name] + [variants.variant_arm_name(spec.name, v) for v in options.optimize + options.quantize]
    if not options.force and all(arm_exists(options.repository, name) for name in wanted):
        log.info("arm %s already exported in %s: kept (use --force to replace)", ", ".join(wanted), options.repository)
        return [read_arm_metadata(options.repository, name) for name in wanted]

    with tempfile.TemporaryDirectory(prefix=f"abqa-export-{spec.name}-") as tmp:
        workdir = Path(tmp)
        checkpoint = resolve_checkpoint(
            spec, workdir, offline=options.offline, standin_overrides=options.standin_overrides, seed=options.seed
        )
        export_dir = workdir / "onnx"
        onnx_path = onnx_export.export_onnx(checkpoint.path, export_dir, opset=options.opset)
        base = _validated_metadata(spec, checkpoint, onnx_path)
        results = [_install(base, onnx_path, export_dir, options, extra=None)]
        for level in options.optimize:
            model = variants.optimize(export_dir, level, workdir / f"opt-{level}")
            results.append(_install_variant(base, level, model, onnx_path, export_dir, options))
        for quantization in options.quantize:
            if quantization not in variants.QUANTIZATIONS:
                raise AbqaError(f"--quantize {quantization!r}: choose one of {', '.join(variants.QUANTIZATIONS)}")
            model = variants.quantize_int8(export_dir, workdir / f"quant-{quantization}")
            results.append(_install_variant(base, quantization, model, onnx_path, export_dir, options))
    return results


def _validated_metadata(spec: ArmSpec, checkpoint: ResolvedCheckpoint, onnx_path: Path) -> ExportMetadata:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint.path, use_fast=True)
    try:
        check = onnx_export.validate_onnx(model, tokenizer, onnx_path)
    except AbqaError as exc:
        raise AbqaError(f"arm {spec.name!r}: {exc}; nothing was written") from None
    log.info("arm %s: ONNX matches PyTorch, max |logit diff| %.2e", spec.name, check.max_abs_diff)
    config = model.config
    inputs, outputs = tensor_specs_from_onnx(onnx_path)
    return ExportMetadata(
        arm=spec.name,
        source=checkpoint.source,
        source_kind=checkpoint.source_kind,
        standin=checkpoint.standin,
        architecture=config.model_type,
        revision=checkpoint.revision,
        num_layers=getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None),
        hidden_size=getattr(config, "hidden_size", None) or getattr(config, "dim", None),
        parameters=sum(p.numel() for p in model.parameters()),
        opset=onnx_export.onnx_opset(onnx_path),
        inputs=[s.name for s in inputs],
        outputs=[s.name for s in outputs],
        max_seq_length=min(MAX_SEQ_LENGTH, getattr(config, "max_position_embeddings", MAX_SEQ_LENGTH)),
        do_lower_case=bool(getattr(tokenizer, "do_lower_case", True)),
        validation_max_abs_diff=check.max_abs_diff,
        versions=package_versions(),
    )


def _install_variant(
    base: ExportMetadata, variant: str, model: Path, fp32_model: Path, export_dir: Path, options: ExportOptions
) -> ExportMetadata:
    comparison = onnx_export.compare_onnx(fp32_model, model, export_dir)
    log.info("arm %s-%s vs fp32: %s", base.arm, variant, comparison)
    metadata = replace(
        base,
        arm=variants.variant_arm_name(base.arm, variant),
        variant=variant,
        base_arm=base.arm,
        opset=onnx_export.onnx_opset(model),
        validation_max_abs_diff=comparison["max_abs_diff_vs_fp32"],
    )
    return _install(metadata, model, export_dir, options, extra=comparison)


def _install(
    metadata: ExportMetadata, model: Path, export_dir: Path, options: ExportOptions, extra: dict | None
) -> ExportMetadata:
    """Stage config.pbtxt, 1/model.onnx, tokenizer/ and the metadata, then move the arm into place."""
    if arm_exists(options.repository, metadata.arm) and not options.force:
        log.info("arm %s already exported: kept (use --force to replace)", metadata.arm)
        return read_arm_metadata(options.repository, metadata.arm)
    inputs, outputs = tensor_specs_from_onnx(model)
    triton_config = TritonModelConfig(
        name=metadata.arm, inputs=inputs, outputs=outputs, batching=options.batching, instances=options.instances
    )
    with staged_arm(options.repository, metadata.arm, force=True) as stage:
        stage.version_dir.mkdir()
        shutil.copy2(model, stage.model)
        stage.config.write_text(render_config_pbtxt(triton_config), encoding="utf-8")
        _copy_tokenizer(export_dir, stage.tokenizer)
        metadata = replace(
            metadata,
            onnx_file_size=stage.model.stat().st_size,
            onnx_sha256=sha256_file(stage.model),
            max_batch_size=options.batching.max_batch_size,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        payload = metadata.to_dict() | ({"variant_check": extra} if extra else {})
        write_json_atomic(stage.metadata, payload)
    size_mb = metadata.onnx_file_size / 2**20
    tag = "  [STAND-IN: accuracy meaningless]" if metadata.standin else ""
    print(f"exported {metadata.arm}: {ArmPaths(options.repository, metadata.arm).folder} ({size_mb:.1f} MB, "
          f"{metadata.parameters:,} parameters, {metadata.num_layers} layers){tag}", flush=True)
    return metadata


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def _copy_tokenizer(export_dir: Path, target: Path) -> None:
    """The files the client needs to tokenise exactly as the model was trained (config.json gives model_type)."""
    target.mkdir()
    for name in TOKENIZER_FILES:
        if (export_dir / name).is_file():
            shutil.copy2(export_dir / name, target / name)
    if not (target / "tokenizer.json").is_file():
        raise AbqaError(f"{export_dir}: the checkpoint has no fast tokenizer (tokenizer.json); abqa needs one for offsets")
