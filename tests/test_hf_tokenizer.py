"""A model folder's tokenizer is loaded once per process while the folder's files stay as they are
(adapters/hf_tokenizer.load_tokenizer): several stages of one build read the same tokenizer."""

from __future__ import annotations

import json
import shutil

from llmbuild.adapters import hf_tokenizer


def test_a_tokenizer_is_loaded_again_only_when_its_folder_changes(tiny_llama, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder)
    first = hf_tokenizer.load_tokenizer(folder)
    assert hf_tokenizer.load_tokenizer(folder / ".." / "model") is first, "the same folder, however named"

    config = folder / "tokenizer_config.json"
    changed = json.loads(config.read_text())
    changed["model_max_length"] = 1234
    config.write_text(json.dumps(changed))   # a new size: the folder's files are not what was loaded
    again = hf_tokenizer.load_tokenizer(folder)
    assert again is not first and again.model_max_length == 1234

    for other in range(hf_tokenizer._KEEP):   # a few tokenizers are kept, not every one ever loaded
        shutil.copytree(tiny_llama, tmp_path / f"other{other}")
        hf_tokenizer.load_tokenizer(tmp_path / f"other{other}")
    assert hf_tokenizer.load_tokenizer(folder) is not again
