"""What `abqa export` records about an arm (model_repository/<arm>/abqa-metadata.json), and the stand-in warning.

The run folder's files (meta.json, eval.jsonl, load.json, report.json) are typed in `abqa.core.run`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from abqa.core.errors import AbqaError
from abqa.core.io import read_json_file

STANDIN_WARNING = (
    "STAND-IN: untrained weights with the published architecture; latency, memory and size are "
    "the real model's, accuracy is meaningless"
)


@dataclass
class ExportMetadata:
    """What `abqa export` knows about one arm; written beside its config.pbtxt."""

    arm: str
    source: str                      # hub id, local path, or "standin:<architecture>"
    source_kind: str                 # "hub" | "local" | "standin"
    standin: bool
    architecture: str                # "bert" | "distilbert" | other model_type
    variant: str = "fp32"            # "fp32" | "O1".."O4" | "int8"
    base_arm: str | None = None      # for variants: the arm they were derived from
    revision: str | None = None      # hub commit sha when known
    num_layers: int | None = None
    hidden_size: int | None = None
    parameters: int | None = None
    onnx_file_size: int | None = None
    onnx_sha256: str | None = None
    opset: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    max_seq_length: int = 384
    max_batch_size: int = 0
    do_lower_case: bool = True
    validation_max_abs_diff: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    created_at: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExportMetadata":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def read(cls, path: str | Path) -> "ExportMetadata":
        if not Path(path).is_file():
            raise AbqaError(f"{path}: missing; re-run `abqa export` for this arm")
        data, _ = read_json_file(path, str(path))
        try:
            return cls.from_dict(data)
        except (AttributeError, TypeError) as exc:  # not an object, or a required field missing
            raise AbqaError(
                f"{path}: not a valid abqa metadata file ({exc}); re-run `abqa export` for this arm") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
