"""The training methods llmbuild runs through LLaMA-Factory: the value of `train.stage`, the
LLaMA-Factory stage (and preference loss) it becomes, and the kind of data it learns from.

The one owner of these facts: validation, the data stage, the train stage, eval and the report
read them from here."""

from __future__ import annotations

from dataclasses import dataclass

# the kinds of training data, each with its own row layout (dataset/kinds.py reads and checks them)
CHAT = "chat"          # conversations ending in the assistant's answer: supervised fine-tuning
TEXT = "text"          # raw documents: continued pretraining
PAIRS = "pairs"        # a prompt with a chosen and a rejected answer: preference tuning
LABELLED = "labelled"  # a conversation whose answer is marked desirable or not (a `label`): KTO


@dataclass(frozen=True)
class Method:
    name: str                     # the value of train.stage
    llamafactory_stage: str       # LLaMA-Factory's `stage`
    data: str                     # CHAT, TEXT, PAIRS or LABELLED
    what: str                     # one line for users
    pref_loss: str | None = None  # LLaMA-Factory's `pref_loss` the method fixes (None: train.pref_loss)

    @property
    def preference(self) -> bool:
        """Whether it learns from preferences against a reference model (a reward margin to report)."""
        return self.data in (PAIRS, LABELLED)

    @property
    def token_loss(self) -> bool:
        """Whether it learns from the next-token loss alone, where Liger's fused linear cross-entropy
        applies (LLaMA-Factory turns it off for the stages that need the logits: preference tuning)."""
        return self.llamafactory_stage in ("sft", "pt")


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "sft", CHAT, "supervised fine-tuning on conversations"),
    Method("pt", "pt", TEXT, "continued pretraining on raw text"),
    Method("dpo", "dpo", PAIRS, "direct preference optimisation on chosen/rejected pairs"),
    Method("orpo", "dpo", PAIRS, "odds-ratio preference optimisation (no reference model)", pref_loss="orpo"),
    Method("simpo", "dpo", PAIRS, "simple preference optimisation (length-normalised, no reference model)",
           pref_loss="simpo"),
    Method("kto", "kto", LABELLED, "Kahneman-Tversky optimisation on answers labelled good or bad"),
)}

# train.pref_loss values for train.stage=dpo (LLaMA-Factory's; orpo and simpo are stages of their own here)
DPO_LOSSES = ("sigmoid", "hinge", "ipo")

# what each kind of data looks like, for messages that say which fields a method needs
DATA_FIELDS = {
    CHAT: "a conversation that ends with the assistant's answer (openai: messages; sharegpt: conversations; "
          "alpaca: instruction/output)",
    TEXT: "raw text: a .txt file (one document per line, or documents separated by blank lines) or JSON/JSONL "
          "rows with a 'text' field",
    PAIRS: "a prompt and two answers, 'chosen' and 'rejected' (openai: messages or prompt ending with the user's "
           "turn; sharegpt: conversations ending with the human's turn; alpaca: instruction/input)",
    LABELLED: "a conversation that ends with the assistant's answer and a boolean 'label' (true: a good answer)",
}


# what the rows of each kind of data are called in messages and reports ("8 held-out preference pairs")
ROW_NOUNS = {CHAT: "rows", TEXT: "documents", PAIRS: "preference pairs", LABELLED: "labelled answers"}


def method(name: str) -> Method:
    return METHODS[name]


def fused_loss(liger_kernel: bool, stage: str) -> bool:
    """Whether Liger's fused linear cross-entropy trains: train.liger_kernel on and a next-token loss."""
    return bool(liger_kernel) and method(stage).token_loss
