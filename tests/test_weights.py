"""The one `--weights` grammar: `abqa loadtest` and `abqa router` accept the same forms and reject the same mistakes."""

from __future__ import annotations

import pytest

from abqa.cli import build_parser
from abqa.core.errors import AbqaError
from abqa.core.weights import check_weights, parse_weights
from abqa.loadtest import traffic
from abqa.router.cli import build_policy

ARMS = ("distilbert", "bert")


def loadtest_weights(text: str) -> tuple[float, ...]:
    return traffic.TrafficPlan(ARMS, traffic.parse_weights(text, ARMS)).weights


def router_weights(text: str) -> tuple[float, ...]:
    args = build_parser().parse_args(["router", "--arms", ",".join(ARMS), f"--weights={text}"])
    return build_policy(args).weights   # normalised to sum to 1


@pytest.mark.parametrize("text, expected", [
    ("50:50", (50.0, 50.0)),
    ("3,1", (3.0, 1.0)),
    ("9/1", (9.0, 1.0)),
    (" 3 : 1 ", (3.0, 1.0)),
    ("bert=3,distilbert=1", (1.0, 3.0)),
    ("bert = 1", (0.0, 1.0)),
])
def test_both_commands_read_every_form_alike(text, expected):
    assert loadtest_weights(text) == expected
    assert router_weights(text) == pytest.approx(tuple(w / sum(expected) for w in expected))


@pytest.mark.parametrize("text, message", [
    ("1:2:3", "'1:2:3': 3 weights for 2 arms"),
    ("roberta=1", "'roberta' is not one of the arms"),
    ("a:b", "not numbers"),
    ("bert=x", "not numbers"),
    ("0:0", "not all 0"),
    ("-1:2", ">= 0"),
    ("nan:1", ">= 0"),
    ("inf:1", ">= 0"),
])
def test_both_commands_reject_the_same_mistakes_naming_the_flag(text, message):
    for weights in (loadtest_weights, router_weights):
        with pytest.raises(AbqaError, match=f"^--weights .*{message}"):
            weights(text)


def test_no_weights_means_equal_and_errors_name_the_given_flag():
    assert parse_weights(None, ARMS) == parse_weights("  ", ARMS) == (1.0, 1.0)
    with pytest.raises(AbqaError, match="^--split: 1 weights for 2 arms"):
        check_weights([1.0], ARMS, flag="--split")
