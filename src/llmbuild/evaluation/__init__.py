"""Evaluation on the held-out rows: cases (held-out conversations rendered in the trained chat
format), task metrics, scores, and the eval.json format. Pure: the worker that runs each model in
its own process is adapters/eval_worker.py."""
