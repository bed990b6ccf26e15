"""The Gradio Space: chat with judge-reranked best-of-n answers, and its one-command deploy.

For every user turn the app samples n candidates from the chat model (its own chat template),
scores them with a pairwise judge (by default the judge of the run that trained the model, read from
its run manifest, else PairRM; any `sppo_hub.judges` judge by config), answers with the candidate of
highest win rate (`sppo_hub.core.preference.win_rates`, the paper's "best-of-n with PairRM" setting) and
lists every candidate with its win rate and the limit that cut it, if any. A second tab answers one
prompt with two models (two iterations of a run) and shows the judge's preference.

Modules: `config` (`SpaceConfig`), this one (resources, the app), `chat` (chat model, ranking), `provenance`
(the run's judge), `deploy` (`deploy_space` uploads `spaces/` plus this package's source in one
commit, then sets the Space variables). `spaces/app.py` is a thin file: `SpaceConfig.from_env()` then
`build_demo(...)`.
gradio, torch and transformers are imported inside functions: `import sppo_hub.space.app` stays light.
"""

from __future__ import annotations

import threading

import numpy as np

from ..core.preference import pairwise_probabilities
from ..judges import PairwiseJudge, load_judge
from .chat import ChatModel, _message_text, _reason, judge_prompt, rank_candidates
from .config import SpaceConfig


class Resources:
    """Models and the judge, each loaded once (lazily, under a lock); load errors kept as user messages."""

    def __init__(self, config: SpaceConfig, judge: PairwiseJudge | None = None):
        self.config = config
        self._judge = judge
        self._models: dict[str, ChatModel | str] = {}
        self._lock = threading.Lock()
        self.judge_label = judge.name if judge is not None else None

    def model(self, name: str) -> ChatModel:
        with self._lock:
            if name not in self._models:
                try:
                    revision = self.config.revision if name == self.config.model else None
                    self._models[name] = ChatModel(name, revision=revision, device=self.config.device,
                                                   max_time=self.config.time_limit_s)
                except Exception as err:  # noqa: BLE001 - any load failure becomes a message for the user
                    self._models[name] = (
                        f"Model {name!r} could not be loaded ({_reason(err)}). Pass --model a local model folder "
                        "or a Hub repo id (in a Space: the SPPO_MODEL variable)."
                    )
            found = self._models[name]
        if isinstance(found, str):
            raise RuntimeError(found)
        return found

    def judge(self) -> PairwiseJudge:
        with self._lock:
            if self._judge is None:
                label = "?"
                try:
                    judge_config, label = self.config.resolve_judge()
                    self.judge_label = label
                    self._judge = load_judge(judge_config)
                except Exception as err:  # noqa: BLE001
                    self._judge = (f"Judge {label} could not be loaded ({_reason(err)}). Pass --judge (the type) "
                                   "and --judge-model to choose another judge (in a Space: the SPPO_JUDGE_TYPE and "
                                   "SPPO_JUDGE variables).")
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
    """Sample n answers, rank them with the judge.

    Returns (winner index, candidates, win rates, turns dropped, cuts): `cuts[i]` names the limit that may have
    cut candidate i ("time limit", "max new tokens") or is "".
    """
    chat = res.model(res.config.model)
    messages, dropped = chat.fit_history(messages, res.config.max_context_tokens)
    candidates, cuts = chat.sample_with_cuts(messages, n, temperature, max_new_tokens)
    rates = rank_candidates(res.judge(), judge_prompt(messages), candidates) if n > 1 else np.ones(1)
    return int(np.argmax(rates)), candidates, rates, dropped, cuts


def cut_notice(cut: str, config: SpaceConfig, max_new_tokens: int) -> str:
    """What the UI says about an answer cut by a limit ("" when it was not)."""
    if cut == "time limit":
        return (f"The answer was cut at the {config.time_limit_s:g} s time limit; raise it with --time-limit "
                "(in a Space: SPPO_TIME_LIMIT_S) or lower 'max new tokens'.")
    if cut == "max new tokens":
        return f"The answer was cut at {max_new_tokens} new tokens; raise 'max new tokens' for a longer answer."
    return ""


def build_demo(config: SpaceConfig, judge: PairwiseJudge | None = None, preload: bool = True, strict: bool = False):
    """The Gradio app (queued, concurrency-limited). `judge` overrides `config`'s judge (tests, notebooks).

    Load errors show as a banner in the app; with `strict=True` (`sppo-hub space run`) they raise a RuntimeError
    instead, so nothing is served.
    """
    import gradio as gr

    res = Resources(config, judge)
    errors = res.preload() if preload or strict else []
    if strict and errors:
        raise RuntimeError("\n".join(errors))

    def chat(message, history, n, temperature, max_new_tokens):
        message = _validate_turn(config, message, n, temperature, max_new_tokens)
        history = [{"role": m["role"], "content": _message_text(m["content"])} for m in history or []]
        try:
            win, cands, rates, dropped, cuts = best_of_n(res, history + [{"role": "user", "content": message}],
                                                         int(n), float(temperature), int(max_new_tokens))
        except RuntimeError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:  # noqa: BLE001 - the user sees a message, never a traceback
            raise gr.Error(f"Generation failed ({type(err).__name__}: {str(err)[:200]}).") from None
        if dropped:
            gr.Warning(f"The conversation was too long: the {dropped} oldest turn(s) were left out.")
        if cuts[win]:
            gr.Warning(cut_notice(cuts[win], config, int(max_new_tokens)))
        rows = [[int(r), round(float(rates[i]), 4), "yes" if i == win else "", cands[i], cuts[i]]
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
        judge_label = res.judge_label or (f"{config.judge_type}:{config.judge or 'default'}" if config.judge_type
                                          else "the run's judge")
        gr.Markdown(f"## {config.title}\nModel `{config.model}`, judge `{judge_label}`. "
                    "Each turn samples n answers and shows the one the judge ranks first; answers cut by the "
                    f"{config.time_limit_s:g} s time limit or the token cap are flagged.")
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
                table = gr.Dataframe(headers=["rank", "win rate", "chosen", "candidate", "cut by"], type="array",
                                     datatype=["number", "number", "str", "str", "str"], wrap=True,
                                     elem_id="sppo-cands")
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
           port: int | None = None, prevent_thread_lock: bool = False, strict: bool = False):
    """Build and serve the app; returns the demo (its `.local_url` is set once it runs). `strict`: see build_demo."""
    demo = build_demo(config, judge=judge, strict=strict)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=prevent_thread_lock, show_error=True,
                quiet=prevent_thread_lock, footer_links=["api"])
    return demo
