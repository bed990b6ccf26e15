"""`sppo-hub space deploy`: the Space's app, its config and this package's source in one commit, then its
variables, secrets and hardware. `plan_deploy` validates and lists everything (`--dry-run` prints it);
`deploy_space` sends it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_FILE, ENV_PREFIX, SPACE_DIR, SpaceConfig


@dataclass
class DeployPlan:
    """Everything `deploy_space` will send: shown as-is by `--dry-run`."""

    space_id: str
    files: dict[str, bytes]  # path in the Space repo -> content
    variables: dict[str, str]
    secrets: list[str]  # names only: values are read from the environment at deploy time, never stored here
    hardware: str | None = None
    private: bool = False

    def describe(self) -> str:
        lines = [f"Space {self.space_id} ({'private' if self.private else 'public'}, sdk gradio)",
                 f"{len(self.files)} files in one commit:"]
        lines += [f"  {path} ({len(data)} bytes)" for path, data in sorted(self.files.items())]
        lines += ["variables:"] + [f"  {k}={v}" for k, v in sorted(self.variables.items())]
        if self.secrets:
            lines += ["secrets (values from the environment, not shown):"] + [f"  {k}" for k in self.secrets]
        if self.hardware:
            lines.append(f"hardware requested: {self.hardware}")
        return "\n".join(lines)


def _space_readme(model: str, judge: str | None, judge_type: str, compare_models: list[str]) -> str:
    """spaces/README.md with the Space metadata pointed at the deployed model(s)."""
    from huggingface_hub import SpaceCard

    card = SpaceCard((SPACE_DIR / "README.md").read_text())
    judge_model = judge if judge_type != "callable" else None
    judge_model = judge_model or ("llm-blender/PairRM" if judge_type == "pairrm" else None)
    card.data.models = list(dict.fromkeys([model, *compare_models] + ([judge_model] if judge_model else [])))
    card.data.title = f"{model.split('/')[-1]} chat"[:60]
    return str(card)


def _bundle_package() -> dict[str, bytes]:
    """This package's source, so the Space runs exactly the tested code (sppo-hub is not on PyPI)."""
    root = Path(__file__).resolve().parents[1]
    return {f"sppo_hub/{p.relative_to(root).as_posix()}": p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def _api(endpoint: str | None, token: str | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def check_model_exists(model: str, revision: str | None = None, endpoint: str | None = None,
                       token: str | None = None) -> None:
    """Fail with a clear message when `model` is not a Hub model repo (or the revision is missing)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        _api(endpoint, token).model_info(model, revision=revision)
    except RevisionNotFoundError:
        raise ValueError(f"--revision: model {model!r} has no revision {revision!r}; pass an existing branch, "
                         "tag or commit") from None
    except RepositoryNotFoundError:
        raise ValueError(f"--model: no model repo {model!r} on {_api(endpoint, token).endpoint} (or it is private "
                         "and the token cannot read it); check the id, e.g. {org}/{run}-iter3") from None


def plan_deploy(model: str, space: str | None = None, judge: str | None = None, judge_type: str | None = "pairrm",
                compare_models: list[str] | tuple = (), revision: str | None = None, hardware: str | None = None,
                private: bool = False, secrets: list[str] | tuple = (), endpoint: str | None = None,
                token: str | None = None, check_model: bool = True) -> DeployPlan:
    """Validate the inputs and build the commit's files and the Space variables (no write)."""
    from huggingface_hub import SpaceHardware
    from huggingface_hub.utils import validate_repo_id

    if model and Path(model).exists():
        raise ValueError(f"--model: {model!r} is a local path; a Space loads models from the Hub. Publish it first "
                         "(`sppo-hub hub publish-model`) and pass its repo id")
    if not model or "/" not in model:
        raise ValueError(f"--model: expected a Hub repo id like org/run-iter3, got {model!r}")
    validate_repo_id(model)
    space = space or f"{model.split('/')[0]}/{model.split('/')[-1]}-chat"
    validate_repo_id(space)
    hardware_names = [h.value for h in SpaceHardware]
    if hardware and hardware not in hardware_names:
        raise ValueError(f"--hardware: unknown {hardware!r}; choose one of {', '.join(hardware_names)}")
    for name in secrets:
        if name not in os.environ:
            raise ValueError(f"--secret {name}: set the environment variable {name} first (its value goes to the "
                             "Space as a secret and is never printed)")
    # A Space on the Hub cannot reach a run's local judge (a callable file, a cached folder): PairRM unless asked.
    judge_type = judge_type or "pairrm"
    config = SpaceConfig(model=model, revision=revision, compare_models=list(compare_models), judge_type=judge_type,
                         judge=judge)  # validates judge_type and the caps
    if check_model:
        for name in config.all_models:
            check_model_exists(name, revision if name == model else None, endpoint=endpoint, token=token)
    settings = {"model": model, "revision": revision, "compare_models": config.compare_models,
                "judge_type": judge_type, "judge": judge}
    files = {"app.py": (SPACE_DIR / "app.py").read_bytes(),
             "requirements.txt": (SPACE_DIR / "requirements.txt").read_bytes(),
             "README.md": _space_readme(model, judge, judge_type, config.compare_models).encode(),
             CONFIG_FILE: (json.dumps(settings, indent=2) + "\n").encode(), **_bundle_package()}
    variables = {f"{ENV_PREFIX}{k.upper()}": (",".join(v) if isinstance(v, list) else str(v))
                 for k, v in settings.items() if v}
    return DeployPlan(space, files, variables, list(secrets), hardware, private)


def deploy_space(plan: DeployPlan, endpoint: str | None = None, token: str | None = None) -> tuple[str, list[str]]:
    """Create the Space, upload `plan.files` in ONE commit, set variables/secrets, request hardware.

    Returns (Space URL, warnings). A failed hardware request is a warning: the Space is already up.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api = _api(endpoint, token)
    url = api.create_repo(plan.space_id, repo_type="space", space_sdk="gradio", private=plan.private, exist_ok=True)
    # A redeploy also removes package files that no longer exist, so the Space runs exactly this code.
    stale = [f for f in api.list_repo_files(plan.space_id, repo_type="space")
             if f.startswith("sppo_hub/") and f not in plan.files]
    api.create_commit(plan.space_id, repo_type="space",
                      operations=[CommitOperationAdd(path, data) for path, data in sorted(plan.files.items())]
                      + [CommitOperationDelete(path) for path in stale],
                      commit_message=f"Deploy the SPPO chat Space for {plan.variables.get('SPPO_MODEL')}")
    for key, value in plan.variables.items():
        api.add_space_variable(plan.space_id, key, value, description="set by sppo-hub space deploy")
    for key in plan.secrets:
        api.add_space_secret(plan.space_id, key, os.environ[key], description="set by sppo-hub space deploy")
    warnings = []
    if plan.hardware:
        try:
            api.request_space_hardware(plan.space_id, plan.hardware)
        except Exception as err:  # noqa: BLE001 - report, the upload itself succeeded
            warnings.append(f"hardware {plan.hardware!r} was not granted ({type(err).__name__}: {str(err)[:200]}); "
                            "change it in the Space settings")
    return str(url), warnings
