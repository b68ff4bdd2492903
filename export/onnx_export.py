"""Export a question-answering checkpoint to ONNX with optimum, and validate the graph against PyTorch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

# Real SQuAD-like inputs of different lengths: the graph must agree with PyTorch at more than one shape,
# since the batch and sequence axes are dynamic.
VALIDATION_SAMPLES = (
    (
        "Which NFL team represented the AFC at Super Bowl 50?",
        "Super Bowl 50 was an American football game to determine the champion of the National Football "
        "League (NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos "
        "defeated the National Football Conference (NFC) champion Carolina Panthers 24-10 to earn their "
        "third Super Bowl title.",
    ),
    ("Where was the game played?", "The game was played on February 7, 2016, at Levi's Stadium in Santa Clara."),
)
VALIDATION_ATOL = 1e-4


@dataclass(frozen=True)
class ValidationResult:
    max_abs_diff: float
    atol: float
    shapes: tuple[tuple[int, int], ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


def export_onnx(checkpoint: Path, out_dir: Path, *, opset: int | None = None) -> Path:
    """optimum's exporter, task question-answering, dynamic batch and sequence axes; returns model.onnx."""
    from optimum.exporters.onnx import main_export

    try:
        main_export(
            str(checkpoint),
            output=out_dir,
            task="question-answering",
            opset=opset,
            device="cpu",
            do_validation=False,  # validate_onnx below checks at the tolerance the project asks for
            local_files_only=True,
        )
    except (ValueError, KeyError, OSError) as exc:
        raise AbqaError(f"{checkpoint}: ONNX export failed ({exc})") from exc
    model = out_dir / "model.onnx"
    if not model.is_file():
        raise AbqaError(f"{checkpoint}: optimum wrote no model.onnx into {out_dir}")
    return model


def onnx_opset(onnx_path: Path) -> int | None:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)
    return next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)


def validation_batches(tokenizer, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """Batch of both samples (padded), then the short one alone: two batch sizes, two sequence lengths."""
    questions, contexts = zip(*VALIDATION_SAMPLES)
    batches = [
        tokenizer(list(questions), list(contexts), padding=True, return_tensors="np"),
        tokenizer([questions[1]], [contexts[1]], return_tensors="np"),
    ]
    return [{name: np.asarray(batch[name], dtype=np.int64) for name in input_names} for batch in batches]


def validate_onnx(model, tokenizer, onnx_path: Path, *, atol: float = VALIDATION_ATOL) -> ValidationResult:
    """Run PyTorch and ONNX Runtime on the same inputs; start/end logits must agree within `atol`."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    max_diff, shapes = 0.0, []
    for feeds in validation_batches(tokenizer, input_names):
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        start, end = session.run(["start_logits", "end_logits"], feeds)
        for got, want in ((start, expected.start_logits), (end, expected.end_logits)):
            max_diff = max(max_diff, float(np.max(np.abs(got - want.numpy()))))
        shapes.append(tuple(feeds["input_ids"].shape))
    return ValidationResult(max_diff, atol, tuple(shapes))


def compare_onnx(reference: Path, candidate: Path, tokenizer_dir: Path) -> dict:
    """How far a variant (optimized or int8) strays from the fp32 graph: max logit diff and span agreement."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, use_fast=True)
    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    names = [i.name for i in ref.get_inputs()]
    max_diff, agree, total = 0.0, 0, 0
    for feeds in validation_batches(tokenizer, names):
        want = ref.run(["start_logits", "end_logits"], feeds)
        got = cand.run(["start_logits", "end_logits"], feeds)
        for w, g in zip(want, got):
            max_diff = max(max_diff, float(np.max(np.abs(w - g))))
            agree += int(np.sum(np.argmax(w, axis=1) == np.argmax(g, axis=1)))
            total += w.shape[0]
    return {"max_abs_diff_vs_fp32": max_diff, "argmax_agreement": agree / total}
