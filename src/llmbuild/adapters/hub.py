"""The Hugging Face hub: download a model snapshot, or say how to work without network."""

from __future__ import annotations

from pathlib import Path

from ..errors import StageError

OFFLINE_REMEDY = ("Without network, put the model on disk and point model.path at it, e.g. "
                  "`doit build model.path=/models/{name}`")


def download(hub_id: str, revision: str | None, out: Path, token: str | None = None) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        snapshot_download(repo_id=hub_id, revision=revision, local_dir=out, token=token)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        raise StageError(f"cannot download '{hub_id}' from the Hugging Face hub ({type(err).__name__}). "
                         + OFFLINE_REMEDY.format(name=hub_id.split("/")[-1])) from None
