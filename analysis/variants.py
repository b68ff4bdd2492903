"""Variant arms (int8, O1..O4) against their fp32 base arm: the speed-up and how often they answer alike (pure).

A variant is the same model made faster, so the two questions are how much faster (the ratio of median latencies,
base / variant, with a block-bootstrap CI over the questions in time order) and whether it still answers the same
(the share of identical answer texts: meaningful even for stand-ins, whose accuracy is not).
"""

from __future__ import annotations

import re
from typing import Any

from abqa.analysis.inputs import RunInputs, pair_positions
from abqa.analysis.summary import ReportSettings, answer_agreement, compare_latency
from abqa.core.run import ArmInfo

# How `abqa export` names a variant arm: <base>-int8, <base>-O2 (export/variants.py's variant_arm_name).
VARIANT_SUFFIX = re.compile(r"^(?P<base>.+)-(?P<variant>int8|O[1-4])$")


def base_arm_of(arm: str, info: ArmInfo | None, arms: list[str]) -> tuple[str | None, bool]:
    """The fp32 arm a variant was made from, and whether that was inferred from the names (meta.json's
    `base_arm` says it when the export recorded it)."""
    if info is not None and info.base_arm:
        return (info.base_arm if info.base_arm in arms else None), False
    if info is not None and info.variant == "fp32":
        return None, False
    match = VARIANT_SUFFIX.match(arm)
    if match and match["base"] in arms:
        return match["base"], True
    return None, False


def variant_comparisons(inputs: RunInputs, settings: ReportSettings) -> list[dict[str, Any]]:
    """One entry per variant arm whose base arm is in the run: speed-up with CI and answer agreement."""
    arms = [arm for arm in inputs.arm_order if arm in inputs.answers]
    found = []
    for arm in arms:
        info = inputs.meta.arms.get(arm) if inputs.meta is not None else None
        base, inferred = base_arm_of(arm, info, arms)
        if base is None:
            continue
        variant, fp32 = inputs.answers[arm], inputs.answers[base]
        ib, iv, _, _ = pair_positions(fp32, variant)
        latency = compare_latency(fp32, variant, ib, iv, settings)   # base / variant: the speed-up
        ok_variant, ok_base = variant.answered_ok(), fp32.answered_ok()
        jb, jv, _, _ = pair_positions(ok_base, ok_variant)
        found.append({
            "arm": arm, "base_arm": base, "base_inferred": inferred,
            "variant": _variant_name(arm, info),
            "speedup": latency["ratio_of_medians"] if latency else None,
            "median_ms": latency["median_b_ms"] if latency else None,
            "base_median_ms": latency["median_a_ms"] if latency else None,
            "latency_questions": latency["paired_questions"] if latency else 0,
            "block_length": latency["block_length"] if latency else None,
            "agreement": answer_agreement(ok_base, ok_variant, jb, jv),
        })
    return found


def _variant_name(arm: str, info: ArmInfo | None) -> str | None:
    if info is not None and info.variant:
        return info.variant
    match = VARIANT_SUFFIX.match(arm)
    return match["variant"] if match else None


def variant_lines(variants: list[dict[str, Any]]) -> list[str]:
    """The verdict's line per variant: how much faster than its base, how often the same answer."""
    lines = []
    for entry in variants:
        speedup, agreement = entry["speedup"], entry["agreement"]
        parts = []
        if speedup and speedup["value"] is not None:
            low, high = speedup["ci"]
            ci = f", 95% CI [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
            parts.append(f"{speedup['value']:.2f}x the speed of {entry['base_arm']} at p50 "
                         f"({entry['median_ms']:.1f} vs {entry['base_median_ms']:.1f} ms{ci}, block bootstrap)")
        else:
            parts.append(f"speed not compared with {entry['base_arm']} (no latency from both)")
        if agreement:
            parts.append(f"the same answer text on {agreement['share_pct']:.1f}% of {agreement['questions']:,} "
                         "questions both answered")
        lines.append(f"Variant {entry['arm']} ({entry['variant'] or 'variant'} of {entry['base_arm']}"
                     f"{', base inferred from the names' if entry['base_inferred'] else ''}): " + "; ".join(parts) + ".")
    return lines
