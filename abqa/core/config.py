"""Defaults and typed configuration shared by every stage."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from abqa.core.errors import AbqaError

# The two arms of the A/B test, as the design card names them.
DEFAULT_ARMS: dict[str, str] = {
    "distilbert": "distilbert/distilbert-base-uncased-distilled-squad",
    "bert": "csarron/bert-base-uncased-squad-v1",
}

# The default pair on SQuAD v2.0 (questions without an answer): the v1.1 checkpoints above never learnt to say "no
# answer", so a v2.0 run needs SQuAD2-trained ones. DistilBERT has no official SQuAD2 checkpoint; twmkn9's is the
# well-known one (distilbert-base-uncased trained with transformers' run_squad.py --version_2_with_negative,
# max_seq_length 384, doc_stride 128: the windowing abqa uses), uncased with the bert-base-uncased vocabulary like
# deepset's BERT, so the two arms differ only in the model. Named apart from the v1.1 arms so that both pairs can
# live in one model repository.
DEFAULT_ARMS_V2: dict[str, str] = {
    "distilbert-squad2": "twmkn9/distilbert-base-uncased-squad2",
    "bert-squad2": "deepset/bert-base-uncased-squad2",
}

# Hugging Face question-answering pipeline defaults: every stage tokenises the same way.
MAX_SEQ_LENGTH = 384
DOC_STRIDE = 128
MAX_QUESTION_LENGTH = 64
N_BEST = 20
MAX_ANSWER_LENGTH = 30
# Windows are padded to a multiple of this (at most MAX_SEQ_LENGTH): the length-bucket policy of a model on a
# CPU, and the default when the device is unknown; abqa.core.qa.pad_multiple_for says why, per device.
PAD_MULTIPLE = 8
PAD_MULTIPLE_GPU = 64
# How `abqa serve` spends the cores (abqa.serve.repository.ThreadPlan); benchmarks/performance.py chose the default:
# every core for each session, one inference at a time, gives a lone request what it gets in-process.
THREAD_PLANS = ("shared", "adaptive", "per-session")
DEFAULT_THREAD_PLAN = "shared"

# Each load-test step: a warm-up whose requests are not measured, then windows of LOAD_WINDOW answers per arm until
# the last three agree within the tolerance (loadtest/steps.py). SQuAD windows of 64 to 384 tokens make one
# request's latency vary by about 40%, a 30-answer window's mean by about 7%: three of them agree within 20% most
# of the time once the step is steady.
LOAD_WARMUP_S = 2.0
LOAD_WINDOW = 30
LOAD_TOLERANCE = 0.2

# Requests Triton's dynamic batcher holds per model before it rejects more at once (UNAVAILABLE "Exceeds maximum
# queue size"): under overload the server answers what it can and refuses the rest quickly, instead of a queue that
# grows to minutes of work (and past the clients' timeouts). Two batches of 8 waiting behind the one that runs:
# with a sweep's usual concurrency (up to 32 users split over two arms) nothing is refused (docs/reliability.md).
DEFAULT_MAX_QUEUE_SIZE = 16

DEFAULT_MODEL_REPOSITORY = Path("model_repository")
DEFAULT_RUNS_DIR = Path("runs")

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
DEFAULT_HOST = "127.0.0.1"

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def shared_data_dir() -> Path | None:
    """`../shared/data` beside the project (or $ABQA_SHARED_DATA), where the real SQuAD files live."""
    env = os.environ.get("ABQA_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "data" for parent in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "squad-v1.1" / "dev-v1.1.json").is_file():
            return candidate
    return None


def validate_arm_name(name: str) -> str:
    """Arm names become Triton model names and folder names: keep them to a safe alphabet."""
    if not _ARM_NAME.match(name):
        raise AbqaError(
            f"arm name {name!r} is not valid: use letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ArmSpec:
    """A named model: `name` is how every stage and report calls it, `source` a hub id or a local path."""

    name: str
    source: str

    @classmethod
    def parse(cls, text: str) -> "ArmSpec":
        """Parse `NAME=SOURCE`; a bare default name (`bert`, `distilbert`) takes its default source."""
        if "=" in text:
            name, source = text.split("=", 1)
            if not source:
                raise AbqaError(f"--arm {text!r}: the source after '=' is empty")
            return cls(validate_arm_name(name.strip()), source.strip())
        known = {**DEFAULT_ARMS, **DEFAULT_ARMS_V2}  # the SQuAD v2.0 pair goes by name too
        if text in known:
            return cls(text, known[text])
        raise AbqaError(
            f"unknown arm {text!r}: known arms are {', '.join(known)}; "
            "give any other model as NAME=SOURCE (a hub id or a local checkpoint folder)"
        )


def default_arm_specs() -> list[ArmSpec]:
    return [ArmSpec(name, source) for name, source in DEFAULT_ARMS.items()]


def split_csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]
