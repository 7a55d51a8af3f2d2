"""Held-out scores over eval cases: the answers' mean negative log-likelihood (prompt tokens
masked, as in training), and against a reference model's log-probabilities the mean KL divergence
of the next-token distributions and top-1 agreement, as llama-perplexity --kl-divergence measures
them; plus prompt and generation speed, as the worker's answer (protocol.py). Pure numpy: the
worker that runs the models feeds it."""

from __future__ import annotations

import math

import numpy as np

from .protocol import Answer

Z95 = 1.959964   # the normal distribution's two-sided 95% quantile


def interval(total: float, squares: float, count: int) -> list[float] | None:
    """The 95% interval of a mean from the sum and the sum of squares of `count` values, as llama.cpp's
    perplexity tool computes its +- (the standard error of the mean, from the sample variance):
    [mean - 1.96 se, mean + 1.96 se]; None below two values."""
    if count < 2:
        return None
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0) * count / (count - 1)
    half = Z95 * math.sqrt(variance / count)
    return [mean - half, mean + half]


def share_interval(hits: int, count: int) -> list[float] | None:
    """The 95% interval of a share (top-1 agreement): the same arithmetic on 0/1 values, kept in [0, 1]."""
    found = interval(hits, hits, count)
    return None if found is None else [max(found[0], 0.0), min(found[1], 1.0)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Scores:
    """Running totals over cases."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.nll_squares = 0.0
        self.answer_tokens = 0
        self.kld = 0.0
        self.kld_squares = 0.0
        self.same_top1 = 0
        self.positions = 0
        self.prompt_tokens = self.prompt_seconds = 0.0
        self.generated_tokens = self.generation_seconds = 0.0
        self.case_logprobs: list[float] = []   # per case: the answer's summed log-probability
        self.case_tokens: list[int] = []       # per case: its answer tokens

    def add_logprobs(self, ids: list[int], logprobs: np.ndarray, answer_start: int,
                     reference: np.ndarray | None) -> None:
        """`logprobs[i]` is the distribution for token i + 1; answer tokens are ids[answer_start:]."""
        targets = np.asarray(ids[1:])
        picked = logprobs[np.arange(len(targets)), targets]
        answer = picked[max(answer_start - 1, 0):]
        self.nll -= float(answer.sum())
        self.nll_squares += float((answer * answer).sum())
        self.answer_tokens += len(answer)
        self.case_logprobs.append(float(answer.sum()))
        self.case_tokens.append(len(answer))
        if reference is not None:
            self.compare(logprobs, reference)

    def compare(self, logprobs: np.ndarray, reference: np.ndarray) -> None:
        """KL divergence and top-1 agreement at each position, against the reference's distributions."""
        kld = (np.exp(reference) * (reference - logprobs)).sum(axis=-1)
        self.kld += float(kld.sum())
        self.kld_squares += float((kld * kld).sum())
        self.same_top1 += int((reference.argmax(axis=-1) == logprobs.argmax(axis=-1)).sum())
        self.positions += len(reference)

    def result(self, answers: list[str], rss: int) -> Answer:
        mean_nll = self.nll / self.answer_tokens if self.answer_tokens else None
        nll_bounds = interval(self.nll, self.nll_squares, self.answer_tokens)
        return Answer(
            answers=answers,
            nll=mean_nll,
            perplexity=math.exp(mean_nll) if mean_nll is not None else None,
            answer_tokens=self.answer_tokens,
            kld=self.kld / self.positions if self.positions else None,
            top1=self.same_top1 / self.positions if self.positions else None,
            prompt_tokens_per_second=self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else None,
            generation_tokens_per_second=(self.generated_tokens / self.generation_seconds
                                          if self.generation_seconds else None),
            peak_rss_bytes=rss,
            case_logprobs=self.case_logprobs,
            case_tokens=self.case_tokens,
            perplexity_interval=[math.exp(bound) for bound in nll_bounds] if nll_bounds else None,
            kld_interval=_non_negative(interval(self.kld, self.kld_squares, self.positions)),
            top1_interval=share_interval(self.same_top1, self.positions),
            compared_tokens=self.positions,
        )


def _non_negative(bounds: list[float] | None) -> list[float] | None:
    return None if bounds is None else [max(bounds[0], 0.0), bounds[1]]
