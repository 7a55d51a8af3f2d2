"""llmbuild: declarative, incremental builds of fine-tuned, quantized, deployable LLMs.

The package is layered; each part imports only the parts listed before it (tests/test_layers.py
checks this, src/llmbuild/README.md explains the tree):

    errors, facts           what holds whatever the configuration says: types, families, file names
    files                   atomic writes, links, project paths, the templates/ folder
    chat                    the prompt-format domain: pure logic over plain values
    config                  Hydra composition, schema, validation (the Modelfile's quoting rule from chat)
    dataset, evaluation     dataset rows; eval cases, scores and eval.json's records
    report                  the report files from plain values
    adapters                the only code that runs foreign tools; plain values in
    sizing, store           `doit size` arithmetic; the artifact store, its links and locks
    plan                    stage table, keys, graph, stage config views
    stages                  one module per stage
    review                  config diffs and lock files
    cli                     doit commands, task loader, task dicts
"""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
