"""Report charts as PNG bytes (matplotlib, Agg). Same data, same bytes: fixed size and DPI, and
no creation time or software stamp in the file."""

from __future__ import annotations

import io

from ..evaluation.results import EvalResults, ModelResult
from ..evaluation.roster import GGUF, VLLM
from ..facts.layout import NO_IMATRIX

SIZE = (7.0, 3.6)
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; chosen here so that planning never imports matplotlib
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "llmbuild"})
    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    _pyplot().close(fig)
    return buffer.getvalue()


def loss_curve(steps: list[tuple[int, float]]) -> bytes | None:
    if not steps:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    ax.plot([s for s, _ in steps], [loss for _, loss in steps], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (LLaMA-Factory trainer log)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def quant_ladder(eval_result: EvalResults) -> bytes | None:
    """Size against KLD and against perplexity, one point per GGUF (KLD vs the f16 GGUF) and per vLLM
    checkpoint (squares: KLD vs the merged model)."""
    points = [m for m in eval_result.models if m.kind in (GGUF, VLLM) and m.file_size]
    if len(points) < 2:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=SIZE)
    shipped = eval_result.shipped_quant
    settings = eval_result.settings
    references = " / ".join(filter(None, (settings.kld_reference, settings.vllm_kld_reference)))
    for ax, read, bounds, label in (
            (left, lambda m: m.kld, lambda m: m.kld_interval, "mean KLD vs " + references + " (95% interval)"),
            (right, lambda m: m.perplexity, lambda m: m.perplexity_interval, "held-out perplexity (95% interval)")):
        for m in points:
            value = read(m)
            if value is None:
                continue
            size = m.file_size / 2**20
            color = "tab:red" if m.name == shipped else "tab:gray" if m.name.endswith(NO_IMATRIX) else "tab:blue"
            interval = bounds(m)
            if interval:   # the 95% interval as an error bar
                ax.errorbar(size, value, yerr=[[value - interval[0]], [interval[1] - value]], color=color,
                            capsize=3, linewidth=1, zorder=2)
            ax.scatter(size, value, color=color, zorder=3, marker="s" if m.kind == VLLM else "o")
            ax.annotate(shown_name(m) + (" (shipped)" if m.name == shipped else ""), (size, value),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        if ax is left:   # what the recommendation asks of a quant's upper bound
            ax.axhline(settings.recommend_kld, color="tab:green", linestyle="--", linewidth=1)
            ax.annotate(f"eval.recommend_kld {settings.recommend_kld:g}", (0, settings.recommend_kld),
                        xycoords=("axes fraction", "data"), textcoords="offset points", xytext=(4, 3), fontsize=7,
                        color="tab:green")
        ax.margins(x=0.2, y=0.2)  # room for the point labels
        ax.set_xlabel("size (MiB)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("Quant ladder: smaller files against fidelity")
    fig.tight_layout()
    return _png(fig)


def shown_name(model: ModelResult) -> str:
    """A model's name in tables and charts: vLLM's checkpoints say so (`fp8 (vLLM)`)."""
    return f"{model.name} (vLLM)" if model.kind == VLLM else model.name


def sweep_perplexity(names: list[str], values: list[float | None]) -> bytes | None:
    pairs = [(n, v) for n, v in zip(names, values, strict=True) if v is not None]
    if not pairs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(SIZE[0], 0.5 + 0.4 * len(pairs)))
    ax.barh([n for n, _ in pairs], [v for _, v in pairs], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("held-out perplexity of the shipped GGUF (lower is better)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)
