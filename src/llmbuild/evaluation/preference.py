"""Preference metrics on held-out rows, from each answer's summed log-probability under a model and
under the reference model that preference tuning started from (the one its loss measures the
tuned model against). Pure.

Pairs (dpo, orpo, simpo):
- prefers_chosen: share of pairs whose chosen answer has the higher mean log-probability per token
  (length-normalised, so a short answer is not preferred for being short); comparable across models
- margin: mean of log p(chosen) - log p(rejected), summed over each answer's tokens
- reward_accuracy: DPO's implicit reward, beta * (log p_model - log p_reference), is higher for the
  chosen answer than for the rejected one: the share of pairs where it is
- reward_margin: the mean of that reward difference

Labelled answers (kto): reward_accuracy is the share of answers whose implicit reward has the sign
of their label (good above 0, bad below), reward_margin the mean reward of good answers minus that
of bad ones.
"""

from __future__ import annotations

from typing import Any


def pairs(logprobs: list[float], tokens: list[int], reference: list[float] | None, beta: float) -> dict[str, Any]:
    """`logprobs`/`tokens`: per case, chosen answers first, then the rejected ones in the same order
    (evaluation/cases.build_pairs); `reference`: the reference model's log-probabilities of the
    same cases, or None for the reference model itself."""
    n = len(logprobs) // 2
    chosen, rejected = logprobs[:n], logprobs[n:]
    per_token = [(c / max(tc, 1)) > (r / max(tr, 1)) for c, r, tc, tr in zip(chosen, rejected, tokens[:n], tokens[n:],
                                                                               strict=True)]
    out: dict[str, Any] = {"pairs": n, "prefers_chosen": _mean(per_token),
                           "margin": _mean([c - r for c, r in zip(chosen, rejected, strict=True)]),
                           "reward_accuracy": None, "reward_margin": None}
    if reference is not None:
        rewards = [beta * (lp - ref) for lp, ref in zip(logprobs, reference, strict=True)]
        differences = [c - r for c, r in zip(rewards[:n], rewards[n:], strict=True)]
        out["reward_accuracy"] = _mean([d > 0 for d in differences])
        out["reward_margin"] = _mean(differences)
    return out


def labelled(logprobs: list[float], labels: list[bool], reference: list[float] | None, beta: float) -> dict[str, Any]:
    """KTO rows: `labels[i]` says whether answer i is a good one."""
    out: dict[str, Any] = {"pairs": None, "prefers_chosen": None, "margin": None,
                           "reward_accuracy": None, "reward_margin": None}
    if reference is None:
        return out
    rewards = [beta * (lp - ref) for lp, ref in zip(logprobs, reference, strict=True)]
    out["reward_accuracy"] = _mean([(r > 0) == good for r, good in zip(rewards, labels, strict=True)])
    good = [r for r, label in zip(rewards, labels, strict=True) if label]
    bad = [r for r, label in zip(rewards, labels, strict=True) if not label]
    if good and bad:
        out["reward_margin"] = _mean(good) - _mean(bad)
    return out


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None
