"""Optional variants of an exported arm: ONNX Runtime graph optimization (O1-O4) and dynamic int8 quantization."""

from __future__ import annotations

from pathlib import Path

from abqa.core.errors import AbqaError
from abqa.export.onnx_export import quiet_exporters

OPTIMIZATION_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZATIONS = ("int8",)


def variant_arm_name(base_arm: str, variant: str) -> str:
    return f"{base_arm}-{variant}"


def optimize(export_dir: Path, level: str, out_dir: Path) -> Path:
    """optimum's ORTOptimizer at `level` (O4 is fp16 on GPU only); returns the optimized graph."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig
    from optimum.onnxruntime.constants import ONNX_WEIGHTS_NAME

    if level not in OPTIMIZATION_LEVELS:
        raise AbqaError(f"--optimize {level!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}")
    optimizer = ORTOptimizer.from_pretrained(export_dir, file_names=[ONNX_WEIGHTS_NAME])
    config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=level == "O4")
    with quiet_exporters():
        optimizer.optimize(config, save_dir=out_dir, file_suffix=None)
    return _single_model(out_dir)


def quantize_int8(export_dir: Path, out_dir: Path) -> Path:
    """Dynamic int8 quantization for AVX-512 VNNI CPUs (weights int8, activations quantized at run time)."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from optimum.onnxruntime.constants import ONNX_WEIGHTS_NAME

    quantizer = ORTQuantizer.from_pretrained(export_dir, file_name=ONNX_WEIGHTS_NAME)
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
    with quiet_exporters():
        quantizer.quantize(config, save_dir=out_dir, file_suffix=None)
    return _single_model(out_dir)


def _single_model(out_dir: Path) -> Path:
    """The one graph optimum wrote (its name does not matter: the arm's model file is named by ArmPaths)."""
    models = sorted(out_dir.glob("*.onnx"))
    if len(models) != 1:
        raise AbqaError(f"{out_dir}: expected one .onnx file, found {[m.name for m in models]}")
    return models[0]
