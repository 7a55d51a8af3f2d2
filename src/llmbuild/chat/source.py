"""What a chat template does on its own: its default system prompt, found by rendering.

A publisher's template often puts a system prompt in front of a conversation that has none
(Qwen2.5: "You are Qwen, created by Alibaba Cloud. ..."). Ollama needs it as the Modelfile's
SYSTEM, so it is read off the template itself: the conversation rendered without a system message
against the same conversation with a marker as its system message.
"""

from __future__ import annotations

from typing import Callable

_MARK = "\u2063SYSTEM\u2063"   # invisible separators around a word: in no real prompt
_PROBE = [{"role": "user", "content": "Hi"}]

Render = Callable[[list, list, bool], str]   # (messages, tools, add_generation_prompt) -> text


def default_system(render: Render) -> str | None:
    """The system prompt `render`'s template uses when a conversation has none: its text, "" when
    the template writes an empty system turn, None when it writes none (or folds the system
    message into another turn the way no default can be read from)."""
    try:
        bare = render(_PROBE, [], True)
        with_mark = render([{"role": "system", "content": _MARK}, *_PROBE], [], True)
    except Exception:   # a template that refuses system messages (Gemma 2's raise_exception) has no default
        return None
    if _MARK not in with_mark:
        return None
    before, after = with_mark.split(_MARK, 1)
    if bare.startswith(before) and bare.endswith(after) and len(bare) >= len(before) + len(after):
        return bare[len(before):len(bare) - len(after)]
    return None
