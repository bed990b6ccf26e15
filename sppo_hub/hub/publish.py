"""Publish each SPPO iteration's data and checkpoint to the Hub: one commit per artifact, a tag per
iteration, one Collection per run, generated cards. huggingface_hub's public API only.

Re-publishing is safe: every artifact carries `sppo/artifact.json` (sha256 of each file); publishing
identical content again is a no-op that returns the existing commit, different content is refused
unless `overwrite=True`. A flaky Hub (429, 5xx, dropped connections) is retried call by call (`retry.HubRetry`);
a commit whose reply was lost is found on the Hub (its message, parent and content) and never sent twice.
Run bookkeeping (that manifest, the run manifest, the loss log) lives in the
repo's `sppo/` folder, beside the files a user loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BOOKKEEPING_DIR = "sppo"  # one folder for the run's own files in every repo
MANIFEST = f"{BOOKKEEPING_DIR}/artifact.json"
LEGACY_MANIFEST = "sppo_artifact.json"  # sppo-hub <= 0.1 kept it at the repo root
# Checkpoint files that are run bookkeeping, not model files: published under BOOKKEEPING_DIR.
BOOKKEEPING_FILES = ("manifest.json", "run_manifest.json", "log_history.json")
# Trainer-state files that are not part of a published checkpoint.
CHECKPOINT_IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
                     "trainer_state.json", "*.lock", ".cache/**", "README.md", MANIFEST, LEGACY_MANIFEST]
DATA_CONFIGS = ("table", "pairs", "triplets")


class ArtifactConflictError(ValueError):
    """An iteration's repo already holds a different artifact."""


@dataclass(frozen=True)
class RepoRef:
    """Where a published artifact lives."""

    repo_id: str
    repo_type: str
    commit_sha: str
    url: str
    tag: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (the LFS oid the Hub stores it under)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest(folder: Path) -> dict:
    files = {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"format": 1, "content_sha256": digest, "files": files}


def _staging_dir() -> tempfile.TemporaryDirectory:
    """A temp folder for one commit's files, named after this process so a later run can tell it is stale.

    It only ever holds copies (the run folder keeps the originals), so removing it loses nothing."""
    import os

    return tempfile.TemporaryDirectory(prefix=f"sppo-publish-{os.getpid()}-")


def clean_stale_staging_dirs(min_age_s: float = 3600.0) -> list[Path]:
    """Remove `sppo-publish-<pid>-*` folders whose process is gone (a publisher killed with -9), and unnamed
    ones older than `min_age_s`."""
    import os
    import shutil
    import time

    removed = []
    for folder in Path(tempfile.gettempdir()).glob("sppo-publish-*"):
        field = folder.name.split("-")[2]
        if field.isdigit():
            if int(field) == os.getpid() or _process_alive(int(field)):
                continue
        elif time.time() - folder.stat().st_mtime < min_age_s:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class HubPublisher:
    """Publishes one run's iterations: `{org}/{run}-iter{t}` (model) and `{org}/{run}-iter{t}-data`."""

    def __init__(self, org: str, run_name: str, private: bool = False, endpoint: str | None = None,
                 token: str | bool | None = None, model_repo_template: str = "{org}/{run}-iter{t}",
                 data_repo_template: str = "{org}/{run}-iter{t}-data", tag_template: str = "iter-{t}",
                 collection_title: str = "SPPO run {run}", retry=None):
        from huggingface_hub import HfApi

        from .retry import HubRetry

        for name, value in (("org", org), ("run_name", run_name)):
            if not value or "/" in value:
                raise ValueError(f"{name}={value!r}: give a non-empty Hub namespace/name part without '/'.")
        self.org, self.run_name, self.private = org, run_name, private
        self.retry = retry or HubRetry()  # transient Hub failures: retried with backoff, each wait reported
        clean_stale_staging_dirs()
        self.model_repo_template, self.data_repo_template = model_repo_template, data_repo_template
        self.tag_template, self.collection_title = tag_template, collection_title
        # token=None: huggingface_hub's usual sources (HF_TOKEN, `hf auth login`). Never logged.
        self.api = HfApi(endpoint=endpoint, token=token, library_name="sppo-hub")
        if endpoint:
            from .endpoint import is_local_endpoint

            if is_local_endpoint(endpoint):
                from huggingface_hub import constants

                # The local Hub speaks the LFS basic transfer only, not xet (see sppo_hub/hub/endpoint.py).
                constants.HF_HUB_DISABLE_XET = True
        for t in (0, 1):  # fail now, not after an hour of training
            self.model_repo_id(t)
            self.data_repo_id(t)
        if self.model_repo_id(1) == self.data_repo_id(1):
            raise ValueError("model_repo_template and data_repo_template give the same repo id: make them differ.")

    def __repr__(self) -> str:
        return f"HubPublisher(org={self.org!r}, run_name={self.run_name!r}, endpoint={self.api.endpoint!r})"

    # -- naming --------------------------------------------------------------------------------
    def _repo_id(self, template: str, iteration: int, field_name: str = "repo template") -> str:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            repo_id = template.format(org=self.org, run=self.run_name, t=iteration)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"{field_name}={template!r}: use only the fields {{org}}, {{run}} and {{t}} ({err}).") from None
        try:
            validate_repo_id(repo_id)
        except HFValidationError as err:
            raise ValueError(f"{field_name} gives an invalid repo id {repo_id!r}: {err}") from None
        if repo_id.count("/") != 1:
            raise ValueError(f"{field_name} gives {repo_id!r}: it must be 'namespace/name'.")
        return repo_id

    def model_repo_id(self, iteration: int) -> str:
        return self._repo_id(self.model_repo_template, iteration, "model_repo_template")

    def data_repo_id(self, iteration: int) -> str:
        return self._repo_id(self.data_repo_template, iteration, "data_repo_template")

    def tag(self, iteration: int) -> str:
        return self.tag_template.format(t=iteration, run=self.run_name)

    # -- publishing ----------------------------------------------------------------------------
    def publish_iteration_data(self, iteration: int, table_ds, pairs_ds, triplets_ds, card_info: Any,
                               overwrite: bool = False) -> RepoRef:
        """Parquet configs `table`, `pairs`, `triplets` (split `train`) + dataset card, as one commit.

        `triplets_ds` may be None (that config is then left out).
        """
        from .cards import render_dataset_card

        _check_iteration(iteration)
        repo_id = self.data_repo_id(iteration)
        parts = {"table": table_ds, "pairs": pairs_ds, "triplets": triplets_ds}
        if triplets_ds is None:
            del parts["triplets"]
        for name, ds in parts.items():
            if ds is None or not hasattr(ds, "to_parquet"):
                raise ValueError(f"{name}_ds must be a datasets.Dataset, got {type(ds).__name__}")
        with _staging_dir() as tmp:
            folder = Path(tmp)
            configs = []
            for name, ds in parts.items():
                rel = f"data/{name}/train-00000-of-00001.parquet"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                # Written by hand (not push_to_hub): push_to_hub commits data and card separately,
                # and an iteration must land as one commit.
                ds.to_parquet(str(folder / rel))
                configs.append({"config_name": name, "data_files": [{"split": "train", "path": rel}],
                                **({"default": True} if name == "pairs" else {})})
            card = render_dataset_card(card_info, repo_id, parts, folder, configs_yaml=configs, endpoint=self.api.endpoint)
            card.save(folder / "README.md")
            return self._commit_folder(repo_id, "dataset", folder, iteration, overwrite,
                                       f"SPPO iteration {iteration}: preference data")

    def publish_checkpoint(self, iteration: int, checkpoint_dir: str | Path, card_info: Any,
                           overwrite: bool = False) -> RepoRef:
        """Adapter or full weights + tokenizer + chat template + generation/training config + card."""
        import shutil

        from .cards import render_model_card

        _check_iteration(iteration)
        src = Path(checkpoint_dir)
        if not src.is_dir():
            raise FileNotFoundError(f"checkpoint_dir={str(src)!r} does not exist: pass the folder save_pretrained wrote.")
        adapter = (src / "adapter_config.json").exists()
        weights = list(src.glob("adapter_model.*") if adapter else
                       [*src.glob("model*.safetensors"), *src.glob("pytorch_model*.bin"), *src.glob("*.index.json")])
        missing = [what for what, ok in (
            ("model weights (model.safetensors or adapter_model.safetensors)", weights),
            ("config (config.json or adapter_config.json)", adapter or (src / "config.json").exists()),
            ("tokenizer (tokenizer_config.json)", (src / "tokenizer_config.json").exists()),
        ) if not ok]
        if missing:
            raise ValueError(f"checkpoint_dir={str(src)!r} lacks {', '.join(missing)}: save the model and its "
                             "tokenizer with save_pretrained into it.")
        if not _has_chat_template(src):
            raise ValueError(f"checkpoint_dir={str(src)!r} has no chat template: save the tokenizer that has one.")
        repo_id = self.model_repo_id(iteration)
        from fnmatch import fnmatch

        with _staging_dir() as tmp:
            folder = Path(tmp)
            for p in sorted(src.rglob("*")):
                rel = p.relative_to(src).as_posix()
                if p.is_file() and not any(fnmatch(rel, pat) for pat in CHECKPOINT_IGNORE):
                    if rel in BOOKKEEPING_FILES:
                        rel = f"{BOOKKEEPING_DIR}/{rel}"
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, folder / rel)
            card = render_model_card(card_info, repo_id, folder, adapter=adapter, endpoint=self.api.endpoint)
            card.save(folder / "README.md")
            return self._commit_folder(repo_id, "model", folder, iteration, overwrite,
                                       f"SPPO iteration {iteration}: {'adapter' if adapter else 'checkpoint'}")

    def _commit_folder(self, repo_id: str, repo_type: str, folder: Path, iteration: int, overwrite: bool,
                       message: str) -> RepoRef:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        self._refuse_token_in(folder)
        manifest = _manifest(folder)
        (folder / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tag = self.tag(iteration)
        api, call = self.api, self._call
        url = call(f"create_repo {repo_id}", api.create_repo, repo_id, repo_type=repo_type, private=self.private,
                   exist_ok=True)
        refs = call(f"list_repo_refs {repo_id}", api.list_repo_refs, repo_id, repo_type=repo_type)
        head = next(b.target_commit for b in refs.branches if b.name == "main")
        tagged = next((t.target_commit for t in refs.tags if t.name == tag), None)
        existing = self._remote_manifest(repo_id, repo_type, tagged or head)
        if existing is not None:
            if existing.get("content_sha256") == manifest["content_sha256"]:
                sha = tagged or head
                if tagged is None:
                    self._create_tag(repo_id, repo_type, tag, sha, None)
                logger.info("%s already holds this artifact (commit %s): nothing to publish", repo_id, sha)
                return RepoRef(repo_id, repo_type, sha, str(url), tag)
            if not overwrite:
                raise ArtifactConflictError(
                    f"{repo_type} repo {repo_id} already holds a different artifact for iteration {iteration} "
                    f"(commit {tagged or head}); pass overwrite=True to replace it, or publish under another run name.")
        local = set(manifest["files"]) | {MANIFEST}
        remote = set(call(f"list_repo_files {repo_id}", api.list_repo_files, repo_id, repo_type=repo_type, revision=head))
        if existing is None and remote - {".gitattributes"} and not overwrite:
            raise ArtifactConflictError(
                f"{repo_type} repo {repo_id} already has files not published by sppo-hub "
                f"({sorted(remote)[:5]}...); pass overwrite=True to replace them, or choose another repo name.")
        ops: list = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in sorted(local)]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - local - {".gitattributes"})]
        # parent_commit=head: the Hub refuses the commit if anything landed meanwhile. A retry after a lost reply
        # first looks for this very commit on the Hub (`_applied_commit`), so it is never applied twice.
        info = call(f"create_commit {repo_id}", api.create_commit, repo_id, operations=ops, commit_message=message,
                    repo_type=repo_type, parent_commit=head,
                    recover=lambda: self._applied_commit(repo_id, repo_type, head, message, manifest))
        sha = getattr(info, "oid", info)  # a CommitInfo, or the sha `_applied_commit` found
        if tagged is not None:
            call(f"delete_tag {tag} of {repo_id}", api.delete_tag, repo_id, repo_type=repo_type, tag=tag,
                 recover=lambda: self._tag_target(repo_id, repo_type, tag) is None or None)
        self._create_tag(repo_id, repo_type, tag, sha, f"SPPO run {self.run_name}, iteration {iteration}")
        return RepoRef(repo_id, repo_type, sha, str(url), tag)

    def _call(self, what: str, fn, *args, recover=None, **kwargs):
        """One Hub call through `self.retry` (transient failures retried, each wait reported)."""
        return self.retry.call(what, fn, *args, recover=recover, **kwargs)

    def _tag_target(self, repo_id: str, repo_type: str, tag: str) -> str | None:
        refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
        return next((t.target_commit for t in refs.tags if t.name == tag), None)

    def _create_tag(self, repo_id: str, repo_type: str, tag: str, sha: str, message: str | None) -> None:
        self._call(f"create_tag {tag} of {repo_id}", self.api.create_tag, repo_id, repo_type=repo_type, tag=tag,
                   revision=sha, tag_message=message,
                   recover=lambda: self._tag_target(repo_id, repo_type, tag) == sha or None)

    def _applied_commit(self, repo_id: str, repo_type: str, parent: str, message: str, manifest: dict) -> str | None:
        """The sha of our commit if the Hub applied it (main moved from `parent` to a commit with our message and
        content); None if main has not moved (not applied: send it again). Anything else landed meanwhile: refused."""
        refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
        head = next(b.target_commit for b in refs.branches if b.name == "main")
        if head == parent:
            return None
        commits = self.api.list_repo_commits(repo_id, repo_type=repo_type, revision=head)
        ours = (len(commits) > 1 and commits[0].title == message and commits[1].commit_id == parent
                and (self._remote_manifest(repo_id, repo_type, head) or {}).get("content_sha256")
                == manifest["content_sha256"])
        if not ours:
            raise ArtifactConflictError(f"{repo_type} repo {repo_id} changed while publishing ({parent[:8]} -> "
                                        f"{head[:8]}, not by this run); rerun with --resume to publish again.")
        return head

    def _refuse_token_in(self, folder: Path, max_bytes: int = 20 * 1024 * 1024) -> None:
        """Refuse to publish any (non-weight-sized) file that contains the Hub token."""
        from huggingface_hub import get_token

        token = self.api.token if isinstance(self.api.token, str) else get_token()
        if not token or len(token) < 8:  # too short to search for meaningfully (real tokens are ~37 chars)
            return
        needle = token.encode()
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.stat().st_size <= max_bytes and needle in p.read_bytes():
                raise ValueError(f"{p.relative_to(folder).as_posix()} contains your Hub token: remove it (e.g. "
                                 "hub_token from the training arguments) before publishing.")

    def _remote_manifest(self, repo_id: str, repo_type: str, revision: str) -> dict | None:
        from huggingface_hub.errors import EntryNotFoundError

        for name in (MANIFEST, LEGACY_MANIFEST):
            try:
                path = self._call(f"download {name} of {repo_id}", self.api.hf_hub_download, repo_id, name,
                                  repo_type=repo_type, revision=revision)
            except EntryNotFoundError:
                continue
            return json.loads(Path(path).read_text())
        return None

    # -- collection ----------------------------------------------------------------------------
    def collection(self):
        """The run's collection (created on first use; one per run and namespace)."""
        title = self.collection_title.format(run=self.run_name, org=self.org)
        return self._call(f"create_collection {title!r}", self.api.create_collection, title, namespace=self.org,
                          private=self.private, exists_ok=True,
                          description=f"Models and preference data of SPPO run {self.run_name}.")

    def add_to_collection(self, *refs: RepoRef) -> Any:
        """Add published artifacts to the run's collection (in the order given; already-present ones are kept)."""
        coll = self.collection()
        for ref in refs:
            note = f"{ref.tag or ''} {ref.repo_type}".strip()
            coll = self._call(f"add {ref.repo_id} to collection {coll.slug}", self.api.add_collection_item, coll.slug,
                              ref.repo_id, ref.repo_type, note=note, exists_ok=True)
        return coll


def _check_iteration(iteration: Any) -> None:
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration={iteration!r}: give a non-negative integer (0 is the starting model).")


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    cfg = folder / "tokenizer_config.json"
    return cfg.exists() and bool(json.loads(cfg.read_text()).get("chat_template"))
