"""The request pool: real SQuAD v1.1 windows, tokenised once per arm, that the Locust users draw from.

One request is one window (batch 1, shape [1, padded length]), tokenised exactly as `abqa evaluate` does it
(`abqa.core.qa.encode_question`: HF pipeline semantics, 384/128, padded to a multiple of PAD_MULTIPLE), so the
server's dynamic batcher sees the shapes real traffic has. Item k of the pool is the same (question, window)
for every arm, so split and parallel traffic ask the arms the same questions.

`abqa loadtest` builds the pool once and saves it (`pool.npz`); every Locust step loads that file, so all
steps send the same requests and no Locust process imports transformers. A plain `locust -f` run builds it
from --squad and --model-repository at start-up instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from abqa.core.errors import AbqaError
from abqa.core.io import atomic_file
from abqa.core.qa import Window
from abqa.core.repository import ArmPaths

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 256
DEFAULT_SEED = 0
POOL_FILENAME = "pool.npz"
_META_KEY = "__meta__"
_OFFSETS, _CONTEXT_MASK = "@offsets", "@context_mask"   # not Triton input names (those cannot start with @)


@dataclass(frozen=True)
class ArmTensors:
    """What one arm takes and gives, as Triton names them: inputs (name, KServe datatype) and output names."""

    arm: str
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    source: str = "triton"           # "triton" (model metadata) | "export" (abqa-metadata.json)

    @property
    def input_names(self) -> list[str]:
        return [name for name, _ in self.inputs]


@dataclass(frozen=True)
class WindowLayout:
    """Where a window's tokens come from, to decode an answer from its logits (`abqa.core.qa.Window`'s fields)."""

    context_mask: np.ndarray        # bool [length]: True where the token is from the context
    offsets: np.ndarray             # int64 [length, 2]: each token's character span in the context

    @property
    def length(self) -> int:
        return int(self.offsets.shape[0])


@dataclass(frozen=True)
class PoolQuestion:
    """What the answers under load are decoded and scored with: the context, the reference answers."""

    context: str
    references: tuple[str, ...]
    language: str | None = None


@dataclass
class PoolItem:
    """One request: window `window` of question `question_id`, as each arm's tokenizer encodes it."""

    question_id: str
    window: int
    tensors: dict[str, dict[str, np.ndarray]]   # arm -> input name -> array [1, padded length]
    layouts: dict[str, WindowLayout] = field(default_factory=dict)   # arm -> layout (absent: not decodable)

    def shape(self, arm: str) -> tuple[int, ...]:
        return next(iter(self.tensors[arm].values())).shape

    def padded_tokens(self, arm: str) -> int:
        return int(self.shape(arm)[-1])

    def tokens(self, arm: str) -> int:
        """Real tokens (the rest is padding)."""
        if arm in self.layouts:
            return self.layouts[arm].length
        mask = self.tensors[arm].get("attention_mask")
        return int(np.count_nonzero(mask)) if mask is not None else self.padded_tokens(arm)


@dataclass
class RequestPool:
    arms: dict[str, ArmTensors]
    items: list[PoolItem]
    dataset: dict[str, Any] = field(default_factory=dict)
    questions: dict[str, PoolQuestion] = field(default_factory=dict)

    def windows_per_question(self) -> dict[str, int]:
        """How many windows of each question the pool holds (a question is answered when all of them are)."""
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.question_id] = counts.get(item.question_id, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self.items)

    def describe(self) -> dict[str, Any]:
        """load.json's "dataset": where the questions came from and what the pool holds."""
        lengths: dict[str, dict[str, int]] = {}
        for arm in self.arms:
            counts: dict[str, int] = {}
            for item in self.items:
                key = str(item.shape(arm)[-1])
                counts[key] = counts.get(key, 0) + 1
            lengths[arm] = dict(sorted(counts.items(), key=lambda kv: int(kv[0])))
        return {
            **self.dataset,
            "pool_size": len(self.items),
            "pool_questions": len({item.question_id for item in self.items}),
            "padded_lengths": lengths,
            "inputs": {arm: spec.input_names for arm, spec in self.arms.items()},
            "inputs_from": {arm: spec.source for arm, spec in self.arms.items()},
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for index, item in enumerate(self.items):
            for arm, tensors in item.tensors.items():
                for name, array in tensors.items():
                    arrays[f"{index}/{arm}/{name}"] = array
            for arm, layout in item.layouts.items():
                arrays[f"{index}/{arm}/{_OFFSETS}"] = layout.offsets
                arrays[f"{index}/{arm}/{_CONTEXT_MASK}"] = layout.context_mask
        meta = {
            "arms": {arm: asdict(spec) for arm, spec in self.arms.items()},
            "items": [[item.question_id, item.window] for item in self.items],
            "dataset": self.dataset,
            "questions": {qid: {"context": q.context, "references": list(q.references), "language": q.language}
                          for qid, q in self.questions.items()},
        }
        arrays[_META_KEY] = np.array(json.dumps(meta))
        with atomic_file(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RequestPool":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive[_META_KEY]))
                arms = {
                    arm: ArmTensors(spec["arm"], tuple(tuple(pair) for pair in spec["inputs"]), tuple(spec["outputs"]),
                                    spec.get("source", "triton"))
                    for arm, spec in meta["arms"].items()
                }
                items = [
                    PoolItem(question_id, window, {
                        arm: {name: archive[f"{index}/{arm}/{name}"] for name in spec.input_names}
                        for arm, spec in arms.items()
                    }, _layouts(archive, index, arms))
                    for index, (question_id, window) in enumerate(meta["items"])
                ]
                questions = {qid: PoolQuestion(q["context"], tuple(q["references"]), q.get("language"))
                             for qid, q in meta.get("questions", {}).items()}
        except FileNotFoundError:
            raise AbqaError(f"request pool {path}: not found") from None
        except (KeyError, ValueError, OSError) as exc:
            raise AbqaError(f"request pool {path}: not a valid abqa pool file ({type(exc).__name__}: {exc})") from None
        return cls(arms, items, meta.get("dataset", {}), questions)

    def for_arms(self, arms: Sequence[str]) -> "RequestPool":
        """The pool restricted to `arms` (every one must be in it)."""
        missing = [arm for arm in arms if arm not in self.arms]
        if missing:
            raise AbqaError(f"request pool has no requests for arm(s) {', '.join(missing)} (it has: {', '.join(self.arms)})")
        return RequestPool(
            {arm: self.arms[arm] for arm in arms},
            [PoolItem(item.question_id, item.window, {arm: item.tensors[arm] for arm in arms},
                      {arm: item.layouts[arm] for arm in arms if arm in item.layouts}) for item in self.items],
            self.dataset,
            self.questions,
        )


def _layouts(archive, index: int, arms: Mapping[str, ArmTensors]) -> dict[str, WindowLayout]:
    """The layouts a pool file holds for item `index` (a file without them gives answers that cannot be decoded)."""
    layouts = {}
    for arm in arms:
        offsets, mask = f"{index}/{arm}/{_OFFSETS}", f"{index}/{arm}/{_CONTEXT_MASK}"
        if offsets in archive.files and mask in archive.files:
            layouts[arm] = WindowLayout(archive[mask].astype(bool), archive[offsets])
    return layouts


# --- building (pure, given a tokeniser function) --------------------------------------------------------------------

Encoder = Callable[[str, str, str], list[Window]]
"""(arm, question, context) -> that arm's windows (`abqa.core.qa.Window`: arrays by input name, layout)."""


def build_items(questions: Iterable[Any], arms: Sequence[str], encode: Encoder, *, size: int,
                seed: int = DEFAULT_SEED, prefer: Collection[str] = ()) -> list[PoolItem]:
    """Up to `size` windows from `questions` in a seeded random order, the same (question, window) for every arm;
    the questions in `prefer` first (those `abqa evaluate` answered in the run folder: their answers under load can
    be checked).

    A question whose arms cut it into different numbers of windows (different tokenizers) contributes the
    windows they have in common.
    """
    if size < 1:
        raise AbqaError(f"--pool-size {size}: must be at least 1")
    order = list(questions)
    random.Random(seed).shuffle(order)
    preferred = set(prefer)
    order.sort(key=lambda question: question.id not in preferred)  # stable: the seeded order within each group
    items: list[PoolItem] = []
    for question in order:
        per_arm = {arm: encode(arm, question.question, question.context) for arm in arms}
        shared = min(len(windows) for windows in per_arm.values())
        for window in range(shared):
            tensors = {arm: {name: values[None, :] for name, values in per_arm[arm][window].arrays.items()}
                       for arm in arms}
            layouts = {arm: WindowLayout(per_arm[arm][window].context_mask, per_arm[arm][window].offsets)
                       for arm in arms}
            items.append(PoolItem(question.id, window, tensors, layouts))
            if len(items) == size:
                return items
    return items


def cast_inputs(windows: list[Window], spec: ArmTensors) -> list[Window]:
    """Each window's arrays in the datatype the server declares (INT64 for the exported graphs)."""
    from tritonclient.utils import triton_to_np_dtype

    dtypes = {name: triton_to_np_dtype(datatype) for name, datatype in spec.inputs}
    return [dataclasses.replace(window, arrays={name: np.ascontiguousarray(window.arrays[name], dtype=dtypes[name])
                                                for name in spec.input_names})
            for window in windows]


# --- the edges: what the arms take, tokenizers, SQuAD ----------------------------------------------------------------


def arm_tensors_from_metadata(arm: str, metadata: Mapping[str, Any]) -> ArmTensors:
    """From Triton's model metadata (GET /v2/models/<arm>, or tritonclient's get_model_metadata as JSON)."""
    inputs = tuple((str(tensor["name"]), str(tensor["datatype"])) for tensor in metadata.get("inputs", []))
    outputs = tuple(str(tensor["name"]) for tensor in metadata.get("outputs", []))
    if not inputs or not outputs:
        raise AbqaError(f"arm {arm!r}: the server's model metadata lists no inputs or no outputs")
    return ArmTensors(arm, inputs, outputs, "triton")


def arm_tensors_from_export(arm: str, repository: Path) -> ArmTensors:
    """From the arm's abqa-metadata.json (the exported graphs take INT64 token ids)."""
    from abqa.core.records import ExportMetadata

    path = ArmPaths(repository, arm).metadata
    metadata = ExportMetadata.read(path)
    if not metadata.inputs or not metadata.outputs:
        raise AbqaError(f"{path}: no \"inputs\"/\"outputs\"; re-run `abqa export`")
    return ArmTensors(arm, tuple((name, "INT64") for name in metadata.inputs), tuple(metadata.outputs), "export")


def resolve_arm_tensors(arm: str, repository: Path, fetch_metadata: Callable[[str], Mapping[str, Any]] | None) -> ArmTensors:
    """The server's word first (it is what will be asked); the export's metadata when the server cannot say."""
    if fetch_metadata is not None:
        try:
            return arm_tensors_from_metadata(arm, fetch_metadata(arm))
        except Exception as exc:  # server down or model unknown: the export knows the same names
            log.warning("arm %s: no model metadata from the server (%s); using %s", arm, _one_line(exc),
                        ArmPaths(repository, arm).metadata)
    return arm_tensors_from_export(arm, repository)


def read_standin_flags(repository: Path, arms: Sequence[str]) -> dict[str, bool | None]:
    """{arm: standin} from each arm's abqa-metadata.json; None when the file is not there to say."""
    from abqa.core.records import ExportMetadata

    flags: dict[str, bool | None] = {}
    for arm in arms:
        try:
            flags[arm] = bool(ExportMetadata.read(ArmPaths(repository, arm).metadata).standin)
        except AbqaError:
            flags[arm] = None
    return flags


def build_pool(arms: Sequence[str], repository: str | Path, *, squad: str | None = None,
               size: int = DEFAULT_POOL_SIZE, seed: int = DEFAULT_SEED,
               fetch_metadata: Callable[[str], Mapping[str, Any]] | None = None,
               prefer: Collection[str] = ()) -> RequestPool:
    """Tokenise SQuAD questions with each arm's tokenizer (model_repository/<arm>/tokenizer) into a pool, the
    questions in `prefer` first."""
    from abqa.core.qa import encode_question, load_tokenizer
    from abqa.core.data_sources import resolve

    repository = Path(repository)
    specs = {arm: resolve_arm_tensors(arm, repository, fetch_metadata) for arm in arms}
    tokenizers = {arm: load_tokenizer(ArmPaths(repository, arm).tokenizer) for arm in arms}
    dataset = resolve(squad)

    def encode(arm: str, question: str, context: str) -> list[Window]:
        windows = encode_question(tokenizers[arm], question, context, input_names=specs[arm].input_names)
        return cast_inputs(windows, specs[arm])

    items = build_items(dataset.questions, list(arms), encode, size=size, seed=seed, prefer=prefer)
    by_id = {question.id: question for question in dataset.questions}
    questions = {qid: PoolQuestion(by_id[qid].context, tuple(by_id[qid].answer_texts), by_id[qid].language)
                 for qid in dict.fromkeys(item.question_id for item in items)}
    if len(items) < size:
        log.warning("request pool: %d windows asked, the data set has %d", size, len(items))
    description = {
        "path": dataset.path,
        "source": dataset.source,
        "version": dataset.version,
        "sha256": dataset.sha256,
        "questions": len(dataset),
        "seed": seed,
        "pool_questions_evaluated": len({item.question_id for item in items} & set(prefer)),
        # A multilingual pool (--squad xquad.de,xquad.zh): which languages the requests were drawn from.
        **({"languages": [part["language"] for part in dataset.parts]} if dataset.parts else {}),
    }
    return RequestPool(specs, items, description, questions)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
