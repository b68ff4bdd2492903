"""Windowing like the Hugging Face QA pipeline, length buckets, and span post-processing on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from abqa.core.config import DOC_STRIDE, MAX_SEQ_LENGTH, PAD_MULTIPLE
from abqa.core.errors import AbqaError
from abqa.core.qa import (
    NO_ANSWER,
    Window,
    best_answer,
    best_span_in_window,
    encode_question,
    group_by_length,
    pad_multiple_for,
    padded_length,
)

QUESTION = "What is the capital of France?"
CONTEXT = "Paris is the capital and most populous city of France, with an estimated population of two million."
LONG_CONTEXT = " ".join(f"Sentence number {i} says that the river {i} flows north past the town of Alder{i}." for i in range(120))


@pytest.fixture(scope="module")
def bert_tokenizer():
    import transformers

    from abqa.export.standins import real_vocab_file

    return transformers.BertTokenizerFast(vocab_file=str(real_vocab_file()), do_lower_case=True)


@pytest.fixture(scope="module")
def distilbert_tokenizer():
    import transformers

    from abqa.export.standins import real_vocab_file

    return transformers.DistilBertTokenizerFast(vocab_file=str(real_vocab_file()), do_lower_case=True)


# --- windows ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, bucket", [(1, 64), (64, 64), (65, 128), (300, 320), (383, 384), (384, 384)])
def test_padded_length_buckets(length, bucket):
    assert padded_length(length, pad_multiple=64) == bucket


@pytest.mark.parametrize("length, bucket", [(1, 8), (8, 8), (9, 16), (179, 184), (383, 384), (384, 384)])
def test_the_cpu_policy_pads_to_a_multiple_of_8(length, bucket):
    assert padded_length(length) == bucket == padded_length(length, pad_multiple_for("KIND_CPU"))


def test_the_bucket_policy_pads_finely_on_a_cpu_and_coarsely_on_a_gpu():
    # A CPU pays for every padded token and gains little from batches; a GPU gains from merged requests.
    assert pad_multiple_for("KIND_CPU") == pad_multiple_for(None) == PAD_MULTIPLE == 8
    assert pad_multiple_for("KIND_GPU") == 64
    lengths = range(100, 385)
    buckets = {kind: {padded_length(n, pad_multiple_for(kind)) for n in lengths} for kind in ("KIND_CPU", "KIND_GPU")}
    assert len(buckets["KIND_GPU"]) == 5 and len(buckets["KIND_CPU"]) == 36   # 128..384 vs 104..384
    waste = {kind: sum(padded_length(n, pad_multiple_for(kind)) - n for n in lengths) / sum(lengths)
             for kind in buckets}
    assert waste["KIND_CPU"] < 0.02 < 0.10 < waste["KIND_GPU"]


def test_padded_length_without_buckets_and_above_the_maximum():
    assert padded_length(100, pad_multiple=1) == 100
    assert padded_length(500, max_seq_length=384) == 500  # never shorter than the window


def test_short_context_is_one_window_padded_to_its_bucket(bert_tokenizer):
    (window,) = encode_question(bert_tokenizer, QUESTION, CONTEXT,
                                input_names=["input_ids", "attention_mask", "token_type_ids"])
    assert window.padded_length % PAD_MULTIPLE == 0 and 0 <= window.padded_length - window.length < PAD_MULTIPLE
    assert set(window.arrays) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(array.dtype == np.int64 for array in window.arrays.values())
    mask = window.arrays["attention_mask"]
    assert mask[:window.length].all() and not mask[window.length:].any()
    assert (window.arrays["input_ids"][window.length:] == bert_tokenizer.pad_token_id).all()
    # Question first, then the context (token type 1), and only context tokens are candidates.
    types = window.arrays["token_type_ids"][:window.length]
    assert types[0] == 0 and types[window.length - 1] == 1
    context_positions = np.flatnonzero(window.context_mask)
    assert (types[context_positions] == 1).all()
    words = [CONTEXT[s:e] for s, e in window.offsets[context_positions]]
    assert words[0] == "Paris" and words[-1] == "."


def test_input_names_come_from_the_model(distilbert_tokenizer, bert_tokenizer):
    (window,) = encode_question(distilbert_tokenizer, QUESTION, CONTEXT, input_names=["input_ids", "attention_mask"])
    assert list(window.arrays) == ["input_ids", "attention_mask"]
    (window,) = encode_question(bert_tokenizer, QUESTION, CONTEXT, input_names=["attention_mask", "input_ids"])
    assert list(window.arrays) == ["attention_mask", "input_ids"]
    with pytest.raises(AbqaError, match="needs input 'pixel_values'"):
        encode_question(bert_tokenizer, QUESTION, CONTEXT, input_names=["input_ids", "pixel_values"])


def test_a_context_far_longer_than_the_window_is_split_with_overlap(bert_tokenizer):
    windows = encode_question(bert_tokenizer, QUESTION, LONG_CONTEXT)
    context_tokens = len(bert_tokenizer(LONG_CONTEXT, add_special_tokens=False)["input_ids"])
    assert context_tokens > 4 * MAX_SEQ_LENGTH and len(windows) >= 5
    assert all(window.length == MAX_SEQ_LENGTH for window in windows[:-1])
    assert all(window.padded_length <= MAX_SEQ_LENGTH for window in windows)
    spans = [window.offsets[window.context_mask] for window in windows]
    for before, after in zip(spans, spans[1:]):
        # Consecutive windows share exactly doc_stride context tokens (the pipeline's overlap).
        shared = {tuple(o) for o in before} & {tuple(o) for o in after}
        assert len(shared) == DOC_STRIDE
    covered = {tuple(o) for span in spans for o in span}
    assert len(covered) == context_tokens  # every context token is in some window
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(LONG_CONTEXT)


def test_a_very_long_question_is_cut_so_the_context_still_fits(bert_tokenizer):
    question = "Why " + "really " * 500 + "?"
    windows = encode_question(bert_tokenizer, question, CONTEXT)
    question_tokens = int((windows[0].arrays["token_type_ids"][:windows[0].length] == 0).sum()) - 2  # [CLS], [SEP]
    assert question_tokens == 64
    assert windows[0].context_mask.any()


def test_group_by_length_batches_same_buckets(bert_tokenizer):
    windows = encode_question(bert_tokenizer, QUESTION, LONG_CONTEXT)
    groups = group_by_length(windows)
    indices = sorted(i for group, _ in groups for i in group)
    assert indices == list(range(len(windows)))
    for group, arrays in groups:
        assert arrays["input_ids"].shape == (len(group), windows[group[0]].padded_length)
        for row, index in enumerate(group):
            assert (arrays["input_ids"][row] == windows[index].arrays["input_ids"]).all()


# --- post-processing on hand-made logits ---------------------------------------------------------------------------


def make_window(context_positions: range, length: int, padded: int | None = None) -> Window:
    """A window of `length` tokens whose context tokens are `context_positions`; token i covers chars [10i, 10i+5)."""
    mask = np.zeros(length, dtype=bool)
    mask[list(context_positions)] = True
    offsets = np.array([[10 * i, 10 * i + 5] for i in range(length)], dtype=np.int64)
    arrays = {"input_ids": np.zeros(padded or length, dtype=np.int64)}
    return Window(arrays, length, mask, offsets)


def logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    values = np.zeros(length, dtype=np.float32)
    for position, value in peaks.items():
        values[position] = value
    return values


def test_best_span_ignores_question_tokens_and_padding():
    window = make_window(range(5, 15), length=16, padded=64)
    start = logits(64, {2: 50.0, 40: 60.0, 7: 5.0})   # question token 2 and padding 40 score higher
    end = logits(64, {3: 50.0, 50: 60.0, 9: 5.0})
    assert best_span_in_window(window, start, end) == (7, 9, 10.0)


def test_best_span_respects_max_answer_length_and_order():
    window = make_window(range(1, 60), length=60)
    start = logits(60, {2: 10.0, 20: 1.0})
    end = logits(60, {40: 10.0, 21: 1.0, 1: 9.0})     # 2..40 is 39 tokens (> 30); 2..1 ends before it starts
    assert best_span_in_window(window, start, end) == (2, 21, 11.0)
    assert best_span_in_window(window, start, end, max_answer_length=39) == (2, 40, 20.0)


def test_n_best_limits_the_candidates():
    window = make_window(range(1, 20), length=20)
    start = logits(20, {10: 9.0, 3: 8.0})
    end = logits(20, {5: 9.0, 12: 1.0})
    # Only the top start (10) and top end (5) with n_best=1: end before start, so nothing.
    assert best_span_in_window(window, start, end, n_best=1) is None
    assert best_span_in_window(window, start, end, n_best=2) == (3, 5, 17.0)


def test_best_answer_over_windows_returns_the_context_substring():
    context = "".join(f"tok{i:02d}" + " " * 5 for i in range(40))  # token i is context[10i:10i+5]
    first, second = make_window(range(3, 20), 20), make_window(range(3, 20), 20)
    starts = [logits(20, {4: 3.0}), logits(20, {6: 4.0})]
    ends = [logits(20, {5: 3.0}), logits(20, {8: 4.0})]
    answer = best_answer([first, second], starts, ends, context)
    assert answer.window == 1 and answer.score == 8.0
    assert (answer.start_char, answer.end_char) == (60, 85)
    assert answer.text == context[60:85] == "tok06     tok07     tok08"


def test_ties_keep_the_earlier_window():
    context = "x" * 400
    windows = [make_window(range(3, 20), 20), make_window(range(3, 20), 20)]
    same = [logits(20, {5: 2.0}), logits(20, {5: 2.0})]
    assert best_answer(windows, same, same, context).window == 0


def test_no_context_tokens_means_no_answer():
    window = make_window(range(0), 8)
    assert best_answer([window], [np.zeros(8)], [np.zeros(8)], "ctx") == NO_ANSWER
    with pytest.raises(ValueError, match="2 windows but 1 start"):
        best_answer([window, window], [np.zeros(8)], [np.zeros(8), np.zeros(8)], "ctx")
    with pytest.raises(ValueError, match="logits of length 4"):
        best_span_in_window(window, np.zeros(4), np.zeros(4))


# --- with a real (tiny) exported model, in process -------------------------------------------------------------------


def test_bucket_padding_does_not_change_the_answer(tiny_repository):
    """Padding a window to its bucket (attention mask 0) leaves the logits of real tokens as they were."""
    import onnxruntime

    from abqa.core.qa import load_tokenizer

    for arm in ("bert", "distilbert"):
        tokenizer = load_tokenizer(tiny_repository / arm / "tokenizer")
        session = onnxruntime.InferenceSession(str(tiny_repository / arm / "1" / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        for context in (CONTEXT, LONG_CONTEXT):
            padded = encode_question(tokenizer, QUESTION, context, input_names=names)
            exact = encode_question(tokenizer, QUESTION, context, input_names=names, pad_multiple=1)
            assert any(w.padded_length > w.length for w in padded)
            results = {}
            for label, windows in (("padded", padded), ("exact", exact)):
                starts, ends = [], []
                for window in windows:
                    feeds = {name: array[None, :] for name, array in window.arrays.items()}
                    start, end = session.run(["start_logits", "end_logits"], feeds)
                    starts.append(start[0])
                    ends.append(end[0])
                results[label] = (starts, ends, best_answer(windows, starts, ends, context))
            for p, e, w in zip(results["padded"][0], results["exact"][0], exact):
                np.testing.assert_allclose(p[:w.length], e[:w.length], atol=1e-4)
            assert results["padded"][2].text == results["exact"][2].text
            assert results["padded"][2].text in context and results["padded"][2].text
