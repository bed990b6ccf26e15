"""Point huggingface_hub, transformers and datasets at another Hub endpoint at runtime.

`HF_ENDPOINT` is read once, at import time, by `huggingface_hub.constants` and `datasets.config`
(and baked into module-level clients), so setting the environment variable after import has no
effect. `use_endpoint` patches those attributes (and sets the variable for child processes), and
restores everything when used as a context manager.

For a loopback endpoint (the local Hub) it also:
- lifts HF_HUB_OFFLINE for the duration: offline mode blocks every Hub request, local ones too;
- sets HF_HUB_DISABLE_XET: with hf_xet installed the client sends every LFS-mode file through xet
  with no fallback (huggingface_hub `_commit_api._upload_files`), and the local Hub speaks only the
  LFS basic transfer. `is_xet_available()` reads `constants.HF_HUB_DISABLE_XET` at call time.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from urllib.parse import urlsplit

_ENV_KEYS = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_XET",
             "HF_TOKEN")
_MISSING = object()


def is_local_endpoint(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def current_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _targets(url: str, local: bool) -> list[tuple[object, str, object]]:
    """(object, attribute, new value) for every place that caches the endpoint."""
    from huggingface_hub import constants, hf_api

    out = [
        (constants, "ENDPOINT", url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (hf_api.api, "endpoint", url),
    ]
    hf_fs = sys.modules.get("huggingface_hub.hf_file_system")
    if hf_fs is not None and hasattr(hf_fs, "hffs"):
        out.append((hf_fs.hffs, "endpoint", url))
    if local:
        out += [(constants, "HF_HUB_OFFLINE", False), (constants, "HF_HUB_DISABLE_XET", True)]
    try:
        import datasets.config as dconfig
    except ImportError:  # datasets is a core dependency, but keep endpoint switching usable without it
        dconfig = None
    if dconfig is not None:
        out += [(dconfig, "HF_ENDPOINT", url),
                (dconfig, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")]
        if local:
            out += [(dconfig, "HF_HUB_OFFLINE", False), (dconfig, "HF_DATASETS_OFFLINE", False)]
    return out


class _EndpointSwitch:
    """Applied on creation; `restore()` (or leaving the `with` block) undoes it."""

    def __init__(self, url: str, token: str | None):
        url = url.rstrip("/")
        if not urlsplit(url).scheme.startswith("http") or not urlsplit(url).hostname:
            raise ValueError(f"endpoint={url!r}: give a full http(s) URL such as 'http://127.0.0.1:8765'.")
        self.url, local = url, is_local_endpoint(url)
        self._saved_env = {k: os.environ.get(k, _MISSING) for k in _ENV_KEYS}
        self._saved_attrs = []
        for obj, attr, value in _targets(url, local):
            self._saved_attrs.append((obj, attr, getattr(obj, attr, _MISSING)))
            setattr(obj, attr, value)
        os.environ["HF_ENDPOINT"] = url
        if local:
            for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
                os.environ.pop(key, None)
            os.environ["HF_HUB_DISABLE_XET"] = "1"
        if token is not None:
            os.environ["HF_TOKEN"] = token  # process memory only: read by get_token(), never written

    def restore(self) -> None:
        for obj, attr, value in reversed(self._saved_attrs):
            if value is _MISSING:
                delattr(obj, attr)
            else:
                setattr(obj, attr, value)
        for key, value in self._saved_env.items():
            if value is _MISSING:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc) -> None:
        self.restore()

    def __repr__(self) -> str:
        return f"use_endpoint({self.url!r})"


def use_endpoint(url: str, token: str | None = None) -> _EndpointSwitch:
    """Send huggingface_hub / transformers / datasets Hub calls to `url` from now on.

    Use as a function (stays active; call `.restore()` to undo) or as a context manager:

        with use_endpoint(hub.url, token=hub.token):
            AutoModelForCausalLM.from_pretrained("me/run-iter1")
    """
    return _EndpointSwitch(url, token)


@contextmanager
def endpoint_env(url: str):
    """Environment for a child process (e.g. a Space or a script) that should use `url`."""
    env = dict(os.environ, HF_ENDPOINT=url.rstrip("/"))
    if is_local_endpoint(url):
        env.pop("HF_HUB_OFFLINE", None)
        env["HF_HUB_DISABLE_XET"] = "1"
    yield env
