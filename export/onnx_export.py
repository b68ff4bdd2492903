"""Export a question-answering checkpoint to ONNX with optimum, and validate the graph against PyTorch."""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

QA_OUTPUTS = ("start_logits", "end_logits")
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
# optimum's own check at two shapes too; its dummy rows are right-padded at random, as the server's length
# buckets pad real windows.
VALIDATION_SHAPES = ({"batch_size": 2, "sequence_length": 48}, {"batch_size": 1, "sequence_length": 16})
# The project's tolerance on the start/end logits, for optimum's check (whose np.allclose adds 1e-5 x |logit|; its
# own default for BERT and DistilBERT is 1e-5) and, as a plain bound, on the real samples.
VALIDATION_ATOL = 1e-4


@dataclass(frozen=True)
class LogitComparison:
    """How far a graph's start/end logits stray from a reference's on the validation samples."""

    max_abs_diff: float
    argmax_agreement: float                  # share of rows whose best start (and end) index is the same
    shapes: tuple[tuple[int, int], ...]


@contextlib.contextmanager
def quiet_exporters(level: int = logging.ERROR) -> Iterator[None]:
    """Keep the tracer's and the libraries' notes off the user's screen while a graph is exported or checked.

    torch.jit's TracerWarnings (constants in the trace: expected for these models), transformers' and optimum's
    deprecation notes, their "install accelerate" hint and ONNX Runtime's quantizer, which logs a line per tensor
    on the root logger, say nothing an abqa user can act on. Logs at `level` and above still show, and nothing
    outside the block is filtered.
    """
    import torch
    from optimum.utils import logging as optimum_logging
    from transformers.utils import logging as transformers_logging

    libraries = (optimum_logging, transformers_logging)
    levels = [library.get_verbosity() for library in libraries]
    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        for library in libraries:
            library.set_verbosity(level)
        logging.disable(level - 1)
        try:
            yield
        finally:
            logging.disable(disabled)
            for library, previous in zip(libraries, levels):
                library.set_verbosity(previous)


def export_onnx(checkpoint: Path, out_dir: Path, *, opset: int | None = None) -> Path:
    """optimum's exporter, task question-answering, dynamic batch and sequence axes; returns the graph's path."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime.constants import ONNX_WEIGHTS_NAME

    try:
        with quiet_exporters():
            main_export(
                str(checkpoint),
                output=out_dir,
                task="question-answering",
                opset=opset,
                device="cpu",
                # main_export only logs a graph that misses the tolerance and keeps it; validate_onnx refuses it.
                do_validation=False,
                local_files_only=True,
            )
    except (ValueError, KeyError, OSError) as exc:
        raise AbqaError(f"{checkpoint}: ONNX export failed ({exc})") from exc
    model = out_dir / ONNX_WEIGHTS_NAME
    if not model.is_file():
        raise AbqaError(f"{checkpoint}: optimum wrote no {ONNX_WEIGHTS_NAME} into {out_dir}")
    return model


def validate_onnx(model, tokenizer, onnx_path: Path, *, atol: float = VALIDATION_ATOL) -> LogitComparison:
    """optimum's validation (output names, dynamic axes, shapes, values within `atol`) at each VALIDATION_SHAPES,
    then the logits on the real validation samples, which must stray no more than `atol` either: the figure
    abqa-metadata.json records. A graph that disagrees is an AbqaError saying where and by how much."""
    from optimum.exporters.onnx import validate_model_outputs
    from optimum.exporters.tasks import TasksManager

    config = TasksManager.get_exporter_config_constructor(
        "onnx", model=model, task="question-answering", library_name="transformers")(model.config)
    for shape in VALIDATION_SHAPES:
        try:
            with quiet_exporters(logging.CRITICAL):  # its findings come back in the exception
                validate_model_outputs(config, model, onnx_path, list(QA_OUTPUTS), atol=atol, input_shapes=shape,
                                       use_subprocess=False)
        except ValueError as exc:  # optimum's AtolError, ShapeError, OutputMatchError, DynamicAxisNameError
            findings = " ".join(line.strip() for line in str(exc).splitlines())
            raise AbqaError(f"the ONNX graph disagrees with PyTorch on optimum's check at batch "
                            f"{shape['batch_size']} x {shape['sequence_length']} tokens: {findings}") from None
    graph = _OnnxGraph(onnx_path)
    comparison = compare_logits(_torch_logits(model), graph, tokenizer, graph.input_names)
    if comparison.max_abs_diff > atol:
        raise AbqaError(f"the ONNX graph disagrees with PyTorch: max |logit diff| {comparison.max_abs_diff:.2e} "
                        f"> {atol:.0e} on the validation samples (shapes {comparison.shapes})")
    return comparison


def onnx_opset(onnx_path: Path) -> int | None:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)
    return next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)


def validation_batches(tokenizer, input_names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Batch of both samples (padded), then the short one alone: two batch sizes, two sequence lengths."""
    questions, contexts = zip(*VALIDATION_SAMPLES)
    batches = [
        tokenizer(list(questions), list(contexts), padding=True, return_tensors="np"),
        tokenizer([questions[1]], [contexts[1]], return_tensors="np"),
    ]
    return [{name: np.asarray(batch[name], dtype=np.int64) for name in input_names} for batch in batches]


Logits = Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]
"""A model as a function: feeds -> (start_logits, end_logits)."""


def compare_logits(reference: Logits, candidate: Logits, tokenizer, input_names: Sequence[str]) -> LogitComparison:
    """Run both on the validation batches: the largest logit difference and how often the best index agrees."""
    max_diff, agree, total, shapes = 0.0, 0, 0, []
    for feeds in validation_batches(tokenizer, input_names):
        for want, got in zip(reference(feeds), candidate(feeds)):
            max_diff = max(max_diff, float(np.max(np.abs(want - got))))
            agree += int(np.sum(np.argmax(want, axis=1) == np.argmax(got, axis=1)))
            total += want.shape[0]
        shapes.append(tuple(feeds["input_ids"].shape))
    return LogitComparison(max_diff, agree / total, tuple(shapes))


def compare_onnx(reference: Path, candidate: Path, tokenizer_dir: Path) -> dict:
    """How far a variant (optimized or int8) strays from the fp32 graph: max logit diff and span agreement."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, use_fast=True)
    fp32 = _OnnxGraph(reference)
    comparison = compare_logits(fp32, _OnnxGraph(candidate), tokenizer, fp32.input_names)
    return {"max_abs_diff_vs_fp32": comparison.max_abs_diff, "argmax_agreement": comparison.argmax_agreement}


class _OnnxGraph:
    """An ONNX graph in ONNX Runtime as `Logits`."""

    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self.session.run(list(QA_OUTPUTS), feeds)


def _torch_logits(model) -> Logits:
    import torch

    def run(feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        with torch.inference_mode():
            out = model(**{name: torch.from_numpy(values) for name, values in feeds.items()})
        return [out.start_logits.numpy(), out.end_logits.numpy()]

    return run
