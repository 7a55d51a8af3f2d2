"""Evaluation on the held-out rows: cases (held-out conversations rendered in the trained chat
format), task metrics, scores, the models one eval runs (roster.py), the request and answer that
cross the worker's process boundary (protocol.py) and the eval.json format (results.py). Pure: the
worker that runs each model in its own process is adapters/eval_worker.py."""
