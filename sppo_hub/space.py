"""The Gradio Space: chat with judge-reranked best-of-n answers, and its one-command deploy.

For every user turn the app samples n candidates from the chat model (its own chat template),
scores them with a pairwise judge (PairRM by default, any `sppo_hub.judges` judge by config),
answers with the candidate of highest win rate (`sppo_hub.preference.win_rates`, the paper's
"best-of-n with PairRM" setting) and lists every candidate with its win rate. A second tab
answers one prompt with two models (two iterations of a run) and shows the judge's preference.

`spaces/app.py` is a thin file: `SpaceConfig.from_env()` then `build_demo(...)`. `deploy_space`
uploads `spaces/` plus this package's source (the Space installs no sppo-hub wheel: the uploaded
copy is exactly the code that was tested) in one commit, then sets the Space variables.
gradio, torch and transformers are imported inside functions: `import sppo_hub.space` stays light.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .judges import JudgeConfig, PairwiseJudge, load_judge
from .preference import pairwise_probabilities, win_rates

SPACE_DIR = Path(__file__).resolve().parents[1] / "spaces"
CONFIG_FILE = "sppo_space.json"  # written into the Space by `deploy_space`, read by `SpaceConfig.from_env`
ENV_PREFIX = "SPPO_"


@dataclass
class SpaceConfig:
    """What the Space serves and its limits. Every field can be set by env var SPPO_<FIELD> (upper case)."""

    model: str = field(default="", metadata={"help": "Chat model: Hub repo id or local path."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of `model`."})
    compare_models: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra models (e.g. earlier iterations) offered in the 'compare iterations' tab."},
    )
    judge_type: str = field(default="pairrm", metadata={"help": "Judge type (see sppo_hub.judges.JUDGE_TYPES)."})
    judge: str | None = field(
        default=None,
        metadata={"help": "Judge model id/path, or 'module:function' for judge_type=callable. None: judge default."},
    )
    device: str | None = field(default=None, metadata={"help": "torch device; None: cuda if available, else cpu."})
    max_n: int = field(default=8, metadata={"help": "Cap on candidates per turn."})
    default_n: int = field(default=4, metadata={"help": "Candidates per turn shown by default."})
    max_new_tokens: int = field(default=512, metadata={"help": "Cap on new tokens per candidate."})
    default_max_new_tokens: int = field(default=128, metadata={"help": "Default new tokens per candidate."})
    max_input_chars: int = field(default=2000, metadata={"help": "Longest user message accepted."})
    max_context_tokens: int = field(
        default=1024, metadata={"help": "Prompt token budget; the oldest turns are dropped beyond it."}
    )
    time_limit_s: float = field(default=60.0, metadata={"help": "Wall-clock limit of one generation call."})
    concurrency_limit: int = field(
        default=1, metadata={"help": "Requests served at once (the rest wait in the queue)."}
    )
    max_queue: int = field(default=32, metadata={"help": "Longest queue before new requests are refused."})
    title: str = field(default="SPPO chat: best-of-n reranked by a pairwise judge", metadata={"help": "Page title."})

    def __post_init__(self):
        if isinstance(self.compare_models, str):
            self.compare_models = [m.strip() for m in self.compare_models.split(",") if m.strip()]
        for name in ("max_n", "default_n", "max_new_tokens", "default_max_new_tokens", "max_input_chars",
                     "max_context_tokens", "concurrency_limit", "max_queue"):
            value = int(getattr(self, name))
            if value < 1:
                raise ValueError(f"space.{name}: must be >= 1, got {value}")
            setattr(self, name, value)
        self.compare_models = list(self.compare_models or [])
        self.time_limit_s = float(self.time_limit_s)
        if self.time_limit_s <= 0:
            raise ValueError(f"space.time_limit_s: must be > 0 seconds, got {self.time_limit_s}")
        self.default_n = min(self.default_n, self.max_n)
        self.default_max_new_tokens = min(self.default_max_new_tokens, self.max_new_tokens)
        self.judge_config()  # validate the judge fields now, not at the first message

    def judge_config(self) -> JudgeConfig:
        if self.judge_type == "callable":
            return JudgeConfig(type="callable", callable=self.judge, device=self.device)
        return JudgeConfig(type=self.judge_type, model=self.judge, device=self.device)

    @property
    def all_models(self) -> list[str]:
        return list(dict.fromkeys([self.model, *self.compare_models]))

    @classmethod
    def from_env(cls, env: dict | None = None, config_file: str | Path | None = None) -> "SpaceConfig":
        """Fields from `config_file` (default: sppo_space.json beside spaces/app.py, if any), then SPPO_* env vars."""
        env = os.environ if env is None else env
        values: dict = {}
        path = Path(config_file) if config_file else None
        if path is not None and path.is_file():
            values.update(json.loads(path.read_text()))
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; valid keys are {sorted(known)}")
        for name in known:
            if env.get(f"{ENV_PREFIX}{name.upper()}"):  # empty variables keep the file's value / the default
                values[name] = env[f"{ENV_PREFIX}{name.upper()}"]
        if not values.get("model"):
            raise ValueError("SPPO_MODEL: no model configured; set SPPO_MODEL to a Hub repo id or a local path")
        return cls(**values)


def _message_text(content) -> str:
    """Gradio 6 chat messages carry a list of parts; models want plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    return "".join(_message_text(part) for part in content or [])


def judge_prompt(messages: list[dict]) -> str:
    """The judge's view of a conversation: the last user message, prefixed by earlier turns if any."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def rank_candidates(judge: PairwiseJudge, prompt: str, candidates: list[str]) -> np.ndarray:
    """Win rate of each candidate against the others (P(y_i > pi | x) over the n samples)."""
    if len(candidates) == 1:
        return np.ones(1)
    table = judge.pairwise_tables([prompt], [candidates])[0]
    return win_rates(pairwise_probabilities(table, kind=judge.output_kind))


class ChatModel:
    """A chat model loaded once (through `sppo_hub.generation`), sampling n answers to a conversation.

    Each request samples with its own `SamplingConfig` on a shallow copy of the generator (model and
    tokenizer shared), so concurrent requests never change each other's settings. The wall-clock limit
    is the model's `generation_config.max_time` (transformers' MaxTimeCriteria), the same for every request.
    """

    def __init__(self, name: str, revision: str | None = None, device: str | None = None,
                 max_time: float | None = None):
        from .generation import SamplingConfig
        from .generation.transformers_backend import TransformersGenerator

        self.name = name
        self.generator = TransformersGenerator(name, SamplingConfig(num_samples=1), device=device, revision=revision,
                                               show_progress=False)
        self.tokenizer = self.generator.tokenizer
        self.generator.model.generation_config.max_time = max_time

    def fit_history(self, messages: list[dict], max_tokens: int) -> tuple[list[dict], int]:
        """Drop the oldest turns until the prompt fits `max_tokens`; (kept messages, turns dropped)."""
        dropped = 0
        while True:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"]
            if len(ids) <= max_tokens or len(messages) <= 1:
                return messages, dropped
            messages, dropped = messages[2:] if len(messages) > 2 else messages[1:], dropped + 1

    def sample(self, messages: list[dict], n: int, temperature: float, max_new_tokens: int,
               top_p: float = 0.9) -> list[str]:
        import copy
        import random

        from .generation import SamplingConfig

        generator = copy.copy(self.generator)
        generator.sampling = SamplingConfig(num_samples=n, temperature=temperature, top_p=top_p,
                                            max_new_tokens=max_new_tokens, seed=random.randrange(2**31))
        return [text.strip() for text in generator.generate([messages])[0]]


class Resources:
    """Models and the judge, each loaded once (lazily, under a lock); load errors kept as user messages."""

    def __init__(self, config: SpaceConfig, judge: PairwiseJudge | None = None):
        self.config = config
        self._judge = judge
        self._models: dict[str, ChatModel | str] = {}
        self._lock = threading.Lock()

    def model(self, name: str) -> ChatModel:
        with self._lock:
            if name not in self._models:
                try:
                    revision = self.config.revision if name == self.config.model else None
                    self._models[name] = ChatModel(name, revision=revision, device=self.config.device,
                                                   max_time=self.config.time_limit_s)
                except Exception as err:  # noqa: BLE001 - any load failure becomes a message for the user
                    self._models[name] = (
                        f"Model {name!r} could not be loaded ({type(err).__name__}: {str(err)[:300]}). "
                        "Set SPPO_MODEL to an existing Hub repo id or local model folder."
                    )
            found = self._models[name]
        if isinstance(found, str):
            raise RuntimeError(found)
        return found

    def judge(self) -> PairwiseJudge:
        with self._lock:
            if self._judge is None:
                try:
                    self._judge = load_judge(self.config.judge_config())
                except Exception as err:  # noqa: BLE001
                    self._judge = (f"Judge {self.config.judge_type}:{self.config.judge or 'default'} could not be "
                                   f"loaded ({type(err).__name__}: {str(err)[:300]}). "
                                   "Set SPPO_JUDGE_TYPE / SPPO_JUDGE.")
            found = self._judge
        if isinstance(found, str):
            raise RuntimeError(found)
        return found

    def preload(self) -> list[str]:
        """Load everything now; returns the load errors (shown as a banner in the app)."""
        errors = []
        for getter in [lambda: self.model(self.config.model), self.judge]:
            try:
                getter()
            except RuntimeError as err:
                errors.append(str(err))
        return errors


def _validate_turn(config: SpaceConfig, message, n, temperature, max_new_tokens) -> str:
    import gradio as gr

    message = (message or "").strip()
    if not message:
        raise gr.Error("Empty message: type a question first.")
    if len(message) > config.max_input_chars:
        raise gr.Error(f"Message too long: {len(message)} characters, the limit is {config.max_input_chars}. "
                       "Shorten it.")
    if not 1 <= int(n) <= config.max_n:
        raise gr.Error(f"n (candidates) must be between 1 and {config.max_n}, got {n}.")
    if not 0.0 <= float(temperature) <= 2.0:
        raise gr.Error(f"temperature must be between 0 and 2, got {temperature}.")
    if not 1 <= int(max_new_tokens) <= config.max_new_tokens:
        raise gr.Error(f"max new tokens must be between 1 and {config.max_new_tokens}, got {max_new_tokens}.")
    return message


def best_of_n(res: Resources, messages: list[dict], n: int, temperature: float, max_new_tokens: int):
    """Sample n answers, rank them with the judge: (winner index, candidates, win rates, turns dropped)."""
    chat = res.model(res.config.model)
    messages, dropped = chat.fit_history(messages, res.config.max_context_tokens)
    candidates = chat.sample(messages, n, temperature, max_new_tokens)
    rates = rank_candidates(res.judge(), judge_prompt(messages), candidates) if n > 1 else np.ones(1)
    return int(np.argmax(rates)), candidates, rates, dropped


def build_demo(config: SpaceConfig, judge: PairwiseJudge | None = None, preload: bool = True):
    """The Gradio app (queued, concurrency-limited). `judge` overrides `config`'s judge (tests, notebooks)."""
    import gradio as gr

    res = Resources(config, judge)
    errors = res.preload() if preload else []

    def chat(message, history, n, temperature, max_new_tokens):
        message = _validate_turn(config, message, n, temperature, max_new_tokens)
        history = [{"role": m["role"], "content": _message_text(m["content"])} for m in history or []]
        try:
            win, cands, rates, dropped = best_of_n(res, history + [{"role": "user", "content": message}],
                                                   int(n), float(temperature), int(max_new_tokens))
        except RuntimeError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:  # noqa: BLE001 - the user sees a message, never a traceback
            raise gr.Error(f"Generation failed ({type(err).__name__}: {str(err)[:200]}).") from None
        if dropped:
            gr.Warning(f"The conversation was too long: the {dropped} oldest turn(s) were left out.")
        rows = [[int(r), round(float(rates[i]), 4), "yes" if i == win else "", cands[i]]
                for r, i in enumerate(np.argsort(-rates, kind="stable"), start=1)]
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": cands[win]}]
        return history, rows, ""

    def compare(message, model_a, model_b, temperature, max_new_tokens):
        message = _validate_turn(config, message, 1, temperature, max_new_tokens)
        try:
            answers = [res.model(m).sample([{"role": "user", "content": message}], 1, float(temperature),
                                           int(max_new_tokens))[0]
                       for m in (model_a, model_b)]
            judge = res.judge()
            table = judge.pairwise_tables([message], [answers])[0]
            p_a = float(pairwise_probabilities(table, kind=judge.output_kind)[0, 1])
        except RuntimeError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:  # noqa: BLE001
            raise gr.Error(f"Generation failed ({type(err).__name__}: {str(err)[:200]}).") from None
        verdict = (f"**Judge prefers {'A' if p_a >= 0.5 else 'B'}**: P(A beats B) = {p_a:.3f} "
                   f"({model_a} vs {model_b})")
        return answers[0], answers[1], verdict

    with gr.Blocks(title=config.title) as demo:
        judge_label = judge.name if judge is not None else f"{config.judge_type}:{config.judge or 'default'}"
        gr.Markdown(f"## {config.title}\nModel `{config.model}`, judge `{judge_label}`. "
                    "Each turn samples n answers and shows the one the judge ranks first.")
        if errors:
            gr.Markdown("\n\n".join(f"**Error:** {e}" for e in errors), elem_id="sppo-errors")
        with gr.Tab("Chat"):
            chatbot = gr.Chatbot(label="Conversation", height=360, elem_id="sppo-chatbot")
            msg = gr.Textbox(label="Message", placeholder="Ask something and press Enter", elem_id="sppo-msg",
                             max_lines=8)
            with gr.Row():
                n = gr.Slider(1, config.max_n, value=config.default_n, step=1, label="n (candidates)")
                temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="temperature")
                max_new = gr.Slider(1, config.max_new_tokens, value=config.default_max_new_tokens, step=1,
                                    label="max new tokens")
            with gr.Accordion("All candidates and their win rates", open=False):
                table = gr.Dataframe(headers=["rank", "win rate", "chosen", "candidate"], type="array",
                                     datatype=["number", "number", "str", "str"], wrap=True, elem_id="sppo-cands")
            gr.Button("Clear").click(lambda: ([], [], ""), None, [chatbot, table, msg], api_name=False)
            msg.submit(chat, [msg, chatbot, n, temperature, max_new], [chatbot, table, msg], api_name="chat")
        with gr.Tab("Compare iterations"):
            c_msg = gr.Textbox(label="Prompt", elem_id="sppo-compare-msg")
            models = config.all_models
            with gr.Row():
                a = gr.Dropdown(models, value=models[-1], label="model A")
                b = gr.Dropdown(models, value=models[0], label="model B")
            c_temp = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="temperature")
            c_max = gr.Slider(1, config.max_new_tokens, value=config.default_max_new_tokens, step=1,
                              label="max new tokens")
            with gr.Row():
                out_a, out_b = gr.Textbox(label="A answers"), gr.Textbox(label="B answers")
            verdict = gr.Markdown()
            gr.Button("Compare").click(compare, [c_msg, a, b, c_temp, c_max], [out_a, out_b, verdict],
                                       api_name="compare")
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue)
    demo.sppo_resources = res
    return demo


def launch(config: SpaceConfig, judge: PairwiseJudge | None = None, host: str = "127.0.0.1",
           port: int | None = None, prevent_thread_lock: bool = False):
    """Build and serve the app; returns the demo (its `.local_url` is set once it runs)."""
    demo = build_demo(config, judge=judge)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=prevent_thread_lock, show_error=True,
                quiet=prevent_thread_lock, footer_links=["api"])
    return demo


# ---------------------------------------------------------------------------------------------
# Deploy: one commit with the app, its config and this package's source; then variables/secrets.


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
    root = Path(__file__).resolve().parent
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


def plan_deploy(model: str, space: str | None = None, judge: str | None = None, judge_type: str = "pairrm",
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


__all__ = ["SpaceConfig", "ChatModel", "build_demo", "launch", "best_of_n", "rank_candidates", "judge_prompt",
           "DeployPlan", "plan_deploy", "deploy_space", "check_model_exists"]
