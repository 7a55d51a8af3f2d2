"""Stages: one module per stage, each `run(ctx)` building one artifact from exactly what its key
covers (stages/context.py). They call adapters for tools and import nothing from plan/ or cli/."""
