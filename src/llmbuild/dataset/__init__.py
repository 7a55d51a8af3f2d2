"""Chat datasets: rows read and validated (alpaca, sharegpt, OpenAI messages; JSON or JSONL) and
written in LLaMA-Factory's layout, and the held-out split that eval uses."""
