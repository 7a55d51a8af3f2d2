"""Evaluation on the held-out rows: cases (held-out conversations rendered in the trained chat
format), task metrics, and the worker that scores and runs one model in its own process."""
