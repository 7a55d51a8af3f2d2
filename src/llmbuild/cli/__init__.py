"""The command line: llmbuild's doit commands (one module each, cmd_*.py), the task loader that
plans the build graph for the command's Hydra overrides, and the task dicts doit runs."""
