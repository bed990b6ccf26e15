"""Hub fixtures: a real local Hub server on a free loopback port, endpoint active for the session."""

from __future__ import annotations

import secrets

import pytest

LOCAL_HUB_USER = "sppo-user"
LOCAL_HUB_ORGS = ("sppo-org",)


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """The local Hub (`.url`, `.token`, `.api`, `.user`, `.data_dir`), with huggingface_hub,
    transformers and datasets pointed at it (and the token in HF_TOKEN) for the whole session.

    The user `sppo-user` may write to `sppo-user/*` and `sppo-org/*`.
    """
    from sppo_hub.hub.endpoint import use_endpoint
    from sppo_hub.hub.server import start_local_hub

    import datasets.config
    from huggingface_hub import constants

    token = "hf_local_" + secrets.token_hex(16)
    hub = start_local_hub(tmp_path_factory.mktemp("local-hub"), port=0, token=token, user=LOCAL_HUB_USER,
                          orgs=LOCAL_HUB_ORGS)
    switch = use_endpoint(hub.url, token=token)
    # Downloads from this throwaway Hub go to throwaway caches (repo ids would clash across sessions).
    saved = (constants.HF_HUB_CACHE, datasets.config.HF_DATASETS_CACHE)
    cache = tmp_path_factory.mktemp("local-hub-cache")
    constants.HF_HUB_CACHE, datasets.config.HF_DATASETS_CACHE = str(cache / "hub"), cache / "datasets"
    try:
        yield hub
    finally:
        constants.HF_HUB_CACHE, datasets.config.HF_DATASETS_CACHE = saved
        switch.restore()
        hub.stop()
