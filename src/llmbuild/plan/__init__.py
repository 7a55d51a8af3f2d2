"""Planning: the stage table (what each stage reads, depends on and calls), stage keys, the build
graph of a configuration, the config view each stage runs with, and why a stage would run. Pure:
no model file is read, no tool imported."""
