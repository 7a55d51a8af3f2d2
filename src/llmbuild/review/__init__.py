"""Review of configuration changes: key-level config diffs with the stages they rebuild, lock
files, and the project at a git revision."""
