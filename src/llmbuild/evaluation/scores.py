"""Held-out scores over eval cases: the answers' mean negative log-likelihood (prompt tokens
masked, as in training), and against a reference model's log-probabilities the mean KL divergence
of the next-token distributions and top-1 agreement, as llama-perplexity --kl-divergence measures
them; plus prompt and generation speed, as the worker's answer (protocol.py). Pure numpy: the
worker that runs the models feeds it."""

from __future__ import annotations

import math

import numpy as np

from .protocol import Answer


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Scores:
    """Running totals over cases."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.answer_tokens = 0
        self.kld = 0.0
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
        self.answer_tokens += len(answer)
        self.case_logprobs.append(float(answer.sum()))
        self.case_tokens.append(len(answer))
        if reference is not None:
            p = np.exp(reference)
            self.kld += float((p * (reference - logprobs)).sum())
            self.same_top1 += int((reference.argmax(axis=-1) == logprobs.argmax(axis=-1)).sum())
            self.positions += len(reference)

    def result(self, answers: list[str], rss: int) -> Answer:
        mean_nll = self.nll / self.answer_tokens if self.answer_tokens else None
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
        )
