"""LLaMA-Factory's `lora_target` (llmbuild's lora.target) and its one special value, `all`.

`all` means every linear layer of the decoder blocks (never lm_head), but only as the whole list:
LLaMA-Factory tests for exactly ["all"] (llamafactory/model/adapter.py). Beside other names it hands
'all' to PEFT as a module name, which no model has, so [all, q_proj] would quietly adapt q_proj
alone. Config validation refuses that list and sizing reads the list by the same rule, here.
"""

from __future__ import annotations

from collections.abc import Sequence

ALL = "all"
# what `all` adapts in a llama, mistral or qwen2 decoder block (HF module names, as PEFT matches them)
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def means_all(targets: Sequence[str]) -> bool:
    """True when LLaMA-Factory reads `targets` as every linear layer of the decoder blocks."""
    return [str(t) for t in targets] == [ALL]


def all_not_alone(targets: Sequence[str]) -> tuple[str, str] | None:
    """(the rule broken, the fix) when `targets` names 'all' beside other modules; None otherwise."""
    names = [str(t) for t in targets]
    if ALL not in names or names == [ALL]:
        return None
    return (f"LLaMA-Factory reads '{ALL}' only when it stands alone (beside other names it looks for a module "
            f"called '{ALL}', which no model has, and adapts only the others)",
            f"Use [{ALL}] on its own, or list every module to adapt by name ({ALL} is "
            f"{', '.join(DECODER_LINEARS)} on llama, mistral and qwen2 decoders; add lm_head for the output head).")
