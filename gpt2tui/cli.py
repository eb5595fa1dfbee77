"""The headless CLI: argument parsing, calls into the core, printing, exit codes.

Heavy libraries are imported only inside the command that needs them, so ``gpt2tui --help`` is instant.
Every user error is one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from gpt2tui import __version__

EXIT_USAGE = 2
RUN_SHOW_EVENTS = 20
NO_TERMINAL = (
    "The gpt2tui screens need a terminal, and this one has none (input or output is not a tty); from scripts "
    "use the headless commands: gpt2tui train, generate, eval, serve, models and runs (gpt2tui --help)."
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one sentence too (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(
            f"gpt2tui: {message[0].upper()}{message[1:]}.\n" if message else "gpt2tui: bad arguments.\n"
        )
        raise SystemExit(EXIT_USAGE)


def whole_number(text: str) -> int:
    """argparse type: an integer of at least 1 (its name appears in argparse's messages)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the file (default utf-8)")
    parser.add_argument("--text-column", help="CSV column / JSONL field holding the text")
    parser.add_argument("--question-column", help="CSV column / JSONL field with the question (or prompt)")
    parser.add_argument("--answer-column", help="CSV column / JSONL field with the answer (or completion)")
    parser.add_argument(
        "--txt-split",
        choices=("paragraphs", "file"),
        default="paragraphs",
        help=".txt files: one document per blank-line-separated paragraph (default) or per file",
    )
    parser.add_argument(
        "--no-data-cache",
        dest="data_cache",
        action="store_false",
        help="tokenize the file again instead of reading (and storing) its tokens in the cache",
    )


def _decoding_options(parser: argparse.ArgumentParser, seed: int | None = None) -> None:
    """The decoding settings, with the defaults of ``GenerationSettings`` (``seed``: this command's own)."""
    from gpt2tui.core.generation import STRATEGIES, GenerationSettings

    d = GenerationSettings()
    parser.add_argument("--strategy", default=d.strategy, choices=STRATEGIES)
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--top-k", type=int, default=d.top_k)
    parser.add_argument("--top-p", type=float, default=d.top_p)
    parser.add_argument("--num-beams", type=int, default=d.num_beams)
    parser.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    help_seed = (
        "sampling seed (default: a new one each time)" if seed is None else f"sampling seed (default {seed})"
    )
    parser.add_argument("--seed", type=int, default=seed, help=help_seed)


def _settings(args: argparse.Namespace) -> Any:
    from gpt2tui.core.generation import GenerationSettings

    return GenerationSettings(
        strategy=args.strategy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    ).validate()


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=whole_number,
        help="CPU threads (default: the cores no other process is keeping busy when it starts)",
    )


def build_parser() -> argparse.ArgumentParser:
    from gpt2tui.core.config import COMPILE, TrainConfig
    from gpt2tui.core.prompt_cache import SERVE_CACHES

    parser = _Parser(
        prog="gpt2tui",
        description="Fine-tune GPT-2 on your own data and talk to the result. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"gpt2tui {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("train", help="fine-tune a model on a .txt, .csv or .jsonl file")
    p.add_argument("data", metavar="DATA")
    p.add_argument(
        "--base",
        default="gpt2",
        help="Hub id (gpt2, distilgpt2, ...), a model folder, a stored model, or 'scratch'",
    )
    p.add_argument(
        "--scratch-size", default="tiny", choices=("tiny", "small", "gpt2"), help="size of a scratch model"
    )
    p.add_argument("--name", help="name of the stored model (default <data>-<base>)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument(
        "--epochs",
        type=float,
        default=TrainConfig.epochs,
        help=f"passes over the data (default {TrainConfig.epochs:g})",
    )
    steps.add_argument("--max-steps", type=whole_number, help="optimizer steps (overrides --epochs)")
    p.add_argument("--block-size", type=int, help="tokens per training sequence (default from the base)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help="learning rate (default 5e-5; higher for scratch)")
    p.add_argument(
        "--eval-split", type=float, default=0.1, help="share of blocks held out for eval (default 0.1)"
    )
    p.add_argument(
        "--eval-every", type=int, default=0, help="steps between evals (default: before and after only)"
    )
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--mixed-precision",
        default="auto",
        choices=("auto", "no", "bf16", "fp16"),
        help="auto: bf16 (fp16) on a GPU; bf16 on a CPU with native bf16 for a model 256+ wide; else fp32 (no)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=TrainConfig.save_every,
        help=f"steps between checkpoints (default {TrainConfig.save_every}; 0: only when stopped)",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=whole_number,
        default=TrainConfig.keep_checkpoints,
        help=f"newest checkpoints kept (default {TrainConfig.keep_checkpoints})",
    )
    p.add_argument(
        "--keep-best",
        action="store_true",
        help="store the weights of the best held-out eval, not the last step",
    )
    p.add_argument("--dropout", type=float, help="dropout while training (default: the base model's)")
    p.add_argument(
        "--no-fused-adamw",
        dest="fused_adamw",
        action="store_false",
        help="AdamW as a loop over the tensors instead of torch's fused kernel (other rounding)",
    )
    p.add_argument(
        "--no-fast-gelu",
        dest="fast_gelu",
        action="store_false",
        help="GPT-2's gelu_new as written instead of torch's one-kernel tanh GELU (other rounding)",
    )
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument(
        "--compile",
        default=TrainConfig.compile,
        choices=COMPILE,
        help=f"torch.compile the model (default {TrainConfig.compile}: on with a CUDA GPU, off on a CPU)",
    )
    compiling.add_argument(
        "--no-compile", dest="compile", action="store_const", const="off", help="the same as --compile off"
    )
    p.add_argument(
        "--no-tf32", dest="tf32", action="store_false", help="GPU: fp32 matmuls in full fp32, not TF32"
    )
    p.add_argument(
        "--no-pin-memory",
        dest="pin_memory",
        action="store_false",
        help="GPU: copy batches from ordinary host memory, waiting for each copy",
    )
    _threads_option(p)
    p.add_argument("--num-processes", type=whole_number, help="processes (GPUs) to train on, via accelerate")
    p.add_argument("--detach", action="store_true", help="start the run in the background and return at once")
    _data_options(p)
    p.add_argument("--json", action="store_true", help="end with one JSON object on stdout")

    r = sub.add_parser("runs", help="list, show, follow, stop, resume or remove fine-tune runs")
    r.add_argument(
        "action", nargs="?", default="list", choices=("list", "show", "attach", "stop", "resume", "rm")
    )
    r.add_argument("run", nargs="?", metavar="RUN", help="run id (or a unique prefix of it)")
    r.add_argument(
        "--force",
        action="store_true",
        help="resume/rm: treat a run last seen running on another machine as gone",
    )
    r.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="generate text from a stored model, streamed to stdout")
    g.add_argument("model", metavar="MODEL", help="stored model name or model folder")
    g.add_argument("prompt", metavar="PROMPT", type=argument_text)
    _decoding_options(g)
    g.add_argument("--raw", action="store_true", help="do not apply the model's prompt template")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    _threads_option(g)

    e = sub.add_parser("eval", help="perplexity of a model on a dataset file")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--block-size", type=int)
    e.add_argument("--batch-size", type=whole_number, default=8)
    e.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N",
        help="also reply to N held-out prompts of the file and score the replies (diversity, coherence, "
        "relevance); decoding as in generate, seed 0 unless --seed",
    )
    _decoding_options(e, seed=0)
    _threads_option(e)
    _data_options(e)
    e.add_argument("--json", action="store_true")

    d = sub.add_parser(
        "compare-decoding", help="one prompt under greedy, beam, top-k, top-p and a temperature sweep"
    )
    d.add_argument("model", metavar="MODEL", help="stored model name, model folder or Hub id")
    d.add_argument("prompt", metavar="PROMPT", type=argument_text)
    _decoding_options(d, seed=0)
    _threads_option(d)
    d.add_argument("--json", action="store_true", help="print one JSON list of cells")

    v = sub.add_parser("compare", help="one prompt to two models with the same settings and seed")
    v.add_argument("models", metavar="MODEL", nargs=2, help="two stored model names, folders or Hub ids")
    v.add_argument("prompt", metavar="PROMPT", type=argument_text)
    _decoding_options(v, seed=0)
    _threads_option(v)
    v.add_argument("--json", action="store_true", help="print one JSON list of the two replies")

    c = sub.add_parser("cache", help="list or clear the cache of tokenized files and trained tokenizers")
    c.add_argument("action", nargs="?", default="list", choices=("list", "clear"))
    c.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list, show, rename or delete stored models")
    m.add_argument("action", nargs="?", default="list", choices=("list", "show", "rename", "rm"))
    m.add_argument("names", nargs="*", metavar="NAME")
    m.add_argument("--json", action="store_true")

    s = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API (completions and chat)")
    s.add_argument("models", metavar="MODEL", nargs="+", help="stored model names, model folders or Hub ids")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; from elsewhere use an SSH tunnel)",
    )
    s.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)"
    )
    s.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on /v1 (default: $GPT2TUI_API_KEY, which other users cannot "
        "see in the process list)",
    )
    s.add_argument(
        "--prompt-caches",
        type=int,
        default=SERVE_CACHES,
        metavar="N",
        help=f"key/value caches kept per model, so that up to N conversations that interleave each compute only "
        f"their new messages (default {SERVE_CACHES}; each holds up to the context's keys and values; 0: none)",
    )
    _threads_option(s)

    h = sub.add_parser("push", help="upload a stored model with its card to the Hugging Face Hub")
    h.add_argument("model", metavar="MODEL", help="stored model name")
    h.add_argument("repo_id", metavar="REPO_ID", help="OWNER/NAME of the Hub repository (created if missing)")
    visibility = h.add_mutually_exclusive_group()
    visibility.add_argument(
        "--private",
        dest="private",
        action="store_true",
        default=True,
        help="a new repository is private (default)",
    )
    visibility.add_argument(
        "--public", dest="private", action="store_false", help="a new repository is public"
    )
    h.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gpt2tui.core.errors import UserError

    try:
        if args.command is None:
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                raise UserError(NO_TERMINAL)
            from gpt2tui.ui.app import run

            run()
            return 0
        from gpt2tui.core.quiet import route_library_logs

        route_library_logs(None)
        commands = {
            "train": cmd_train,
            "generate": cmd_generate,
            "eval": cmd_eval,
            "models": cmd_models,
            "runs": cmd_runs,
            "cache": cmd_cache,
            "push": cmd_push,
            "compare-decoding": cmd_compare_decoding,
            "compare": cmd_compare,
            "serve": cmd_serve,
        }
        return commands[args.command](args)
    except UserError as err:
        print(f"gpt2tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gpt2tui: Interrupted.", file=sys.stderr)
        return 130
    except (
        BrokenPipeError
    ):  # the reader went away (`gpt2tui models list | head`): exit quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except Exception as err:  # a bug or an environment problem: still one sentence, never a traceback
        if os.environ.get("GPT2TUI_DEBUG"):
            raise
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else "no details"
        print(
            f"gpt2tui: Unexpected error: {type(err).__name__}: {first} (set GPT2TUI_DEBUG=1 for a traceback).",
            file=sys.stderr,
        )
        return EXIT_USAGE


def argument_text(value: str) -> str:
    """A command-line argument as text: bytes that are not UTF-8 become U+FFFD (as lone surrogates, the
    tokenizer refused them: "TypeError: TextEncodeInput must be …")."""
    from gpt2tui.core.visible import readable

    return readable(value)


def _spec(args: argparse.Namespace) -> Any:
    from gpt2tui.core.data import DataSpec

    return DataSpec(
        path=args.data,
        encoding=args.encoding,
        text_column=args.text_column,
        question_column=args.question_column,
        answer_column=args.answer_column,
        txt_split=args.txt_split,
    )


def _json_number(value: float) -> float | None:
    """JSON has no inf/nan; a diverged perplexity is reported as null."""
    return value if math.isfinite(value) else None


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_number(v) if isinstance(v, float) else v for k, v in data.items()}


class _Output:
    """stdout that survives its reader going away (``gpt2tui train ... | head``): the run goes on, quietly."""

    def __init__(self) -> None:
        self.closed = False

    def line(self, text: str) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet too
            os.close(devnull)


def _stdout_is_pipe() -> bool:
    import select
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode) and hasattr(select, "poll")
    except (OSError, ValueError):
        return False


def _reader_gone(timeout_ms: int = 0) -> bool:
    """Whether stdout is a pipe whose reading end has been closed (poll reports an error on the write end),
    waiting up to ``timeout_ms`` for it."""
    import select

    if not _stdout_is_pipe():
        return False
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)  # errors and hang-ups are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(timeout_ms))


def _when_reader_leaves(callback: Callable[[], None]) -> None:
    """Call ``callback`` once stdout's pipe loses its reader: a follower that prints now and then would
    otherwise notice only at its next line (for a run, its next evaluation or its end)."""
    import threading

    def watch() -> None:
        while not _reader_gone(500):
            pass
        callback()

    if _stdout_is_pipe():
        threading.Thread(target=watch, daemon=True, name="gpt2tui-reader-watch").start()


def _train_config(args: argparse.Namespace) -> Any:
    from gpt2tui.core.config import TrainConfig

    return TrainConfig(
        data=_spec(args),
        base=args.base,
        scratch_size=args.scratch_size,
        name=args.name,
        epochs=args.epochs,
        max_steps=args.max_steps,
        block_size=args.block_size,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        eval_split=args.eval_split,
        eval_every=args.eval_every,
        log_every=args.log_every,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        keep_best=args.keep_best,
        dropout=args.dropout,
        threads=args.threads,
        data_cache=args.data_cache,
        fused_adamw=args.fused_adamw,
        fast_gelu=args.fast_gelu,
        compile=args.compile,
        tf32=args.tf32,
        pin_memory=args.pin_memory,
    )


def _result_json(result: Any) -> str:
    from gpt2tui.core.events import event_to_dict

    summary = event_to_dict(result)
    del summary["event"]
    return json.dumps(_clean({"model": summary.pop("name"), **summary}))


def cmd_train(args: argparse.Namespace) -> int:
    """A run in the foreground (listed and resumable), or ``--detach``ed into its own process."""
    from gpt2tui.core import launch

    config = _train_config(args)
    if args.detach:
        run = launch.create(config, args.num_processes)
        pid = launch.spawn(run)
        if args.json:
            print(json.dumps({"run": run.id, "pid": pid, "folder": str(run.folder)}))
        else:
            print(f"started run {run.id} (pid {pid}); follow it with 'gpt2tui runs attach {run.id}'")
        return 0
    if (args.num_processes or 1) > 1:
        run = launch.create(config, args.num_processes)
        launch.spawn(run)
        return _attach(run, stop_on_interrupt=True, as_json=args.json)
    return _train_here(config, args.json)


def _train_here(config: Any, as_json: bool) -> int:
    """Train in this process (also each process of ``accelerate launch -m gpt2tui train``), as a run."""
    import threading

    from gpt2tui.core import launch
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.events import PROGRESS_EVENTS, RunFailed, RunFinished, RunStarted, describe
    from gpt2tui.core.runs import remove_run
    from gpt2tui.core.training import is_main_process, train

    configure_threads(config.threads)  # before torch is imported: OpenMP reads it once
    out = _Output()
    run = launch.create(config) if is_main_process() else None
    if run is not None:
        config = launch.train_config(run)
    log = open(run.log_path, "a", encoding="utf-8") if run is not None else None  # noqa: SIM115
    began: list[RunStarted] = []

    def show(event: Any) -> None:
        if isinstance(event, PROGRESS_EVENTS):  # for screens; a line each would flood the log
            return
        line = describe(event)
        if log is not None:
            log.write(line + "\n")
            log.flush()
        if isinstance(event, RunStarted):
            began.append(event)
            if run is not None:
                out.line(f"run {run.id} (Ctrl+C stops it with a checkpoint and the model saved)")
        if not isinstance(event, (RunFinished, RunFailed)):  # a failure is the one sentence on stderr
            out.line(line)

    stop = threading.Event()

    def say_stopping() -> None:
        sys.stderr.write("stopping at the next step: saving a checkpoint and the model\n")

    launch.stop_on_signals(stop, say_stopping)
    try:
        result = train(config, on_event=show, stop=stop, run=run)
    except UserError:
        if run is not None and not began:  # refused before it began: the sentence says it all
            remove_run(run)
        raise
    finally:
        if log is not None:
            log.close()
    if not is_main_process():
        return 0
    out.line(describe(result))
    if as_json:
        out.line(_result_json(result))
    return 0


def _attach(run: Any, stop_on_interrupt: bool, as_json: bool = False) -> int:
    """Print a run's events from the start and follow it; Ctrl+C detaches (or stops it, when asked)."""
    import signal
    import threading

    from gpt2tui.core import launch
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.events import PROGRESS_EVENTS, RunFailed, RunFinished, RunStarted, describe
    from gpt2tui.core.runs import follow

    out = _Output()
    detach = threading.Event()
    final: list[Any] = []

    def interrupted(signum: int, frame: Any) -> None:
        if stop_on_interrupt:
            sys.stderr.write("stopping at the next step: saving a checkpoint and the model\n")
            with contextlib.suppress(UserError):  # it has ended already: nothing to stop
                launch.stop(run)
        else:
            detach.set()

    def show(recorded: Any) -> None:
        if isinstance(recorded.event, RunStarted):
            final.clear()  # a resumed attempt: only its own end counts
        if isinstance(recorded.event, (RunFinished, RunFailed)):
            final.append(recorded.event)
        if not isinstance(recorded.event, PROGRESS_EVENTS):
            out.line(describe(recorded.event))

    previous = signal.signal(signal.SIGINT, interrupted)
    if not stop_on_interrupt:  # `runs attach R | head -2` returns when head does, not when the run ends
        _when_reader_leaves(detach.set)
    try:
        status = follow(run, show, detach)
    finally:
        signal.signal(signal.SIGINT, previous)
    if detach.is_set() and (out.closed or _reader_gone()):
        return 0  # quietly: the reader left, the run goes on
    if detach.is_set():
        sys.stderr.write(
            f"detached; run {run.id} goes on ('gpt2tui runs attach {run.id}' follows it again)\n"
        )
        return 0

    if status.state in ("finished", "stopped") and final and isinstance(final[-1], RunFinished):
        if as_json:
            out.line(_result_json(final[-1]))
        return 0
    if status.state == "failed" and status.message and not (final and isinstance(final[-1], RunFailed)):
        final = [RunFailed(status.message)]  # the process died without a word: the status says why
    message = final[-1].message if final and isinstance(final[-1], RunFailed) else f"it ended {status.state}"
    raise UserError(f"Run {run.id} failed: {message.rstrip('.')}.")


def cmd_runs(args: argparse.Namespace) -> int:
    from gpt2tui.core import launch
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.runs import get_run, list_runs, remove_leftovers, remove_run

    if args.action == "list":
        if args.run:
            raise UserError("'runs list' takes no run id.")
        remove_leftovers()
        runs = [r.summary() for r in list_runs()]
        if args.json:
            print(json.dumps([_clean(r) for r in runs]))
        elif not runs:
            print("No runs yet; start one with 'gpt2tui train DATA'.")
        else:
            print(f"{'RUN':<22} {'STATE':<9} {'STEP':>11} {'MODEL':<28} {'EVAL LOSS':>9}  UPDATED")
            for r in runs:
                steps = f"{r['step']}/{r['total_steps'] if r['total_steps'] is not None else '?'}"
                loss = f"{r['last_eval_loss']:.4f}" if isinstance(r["last_eval_loss"], float) else "-"
                print(
                    f"{r['run']:<22} {r['state']:<9} {steps:>11} {r['model'] or '-':<28} {loss:>9}  "
                    f"{(r['updated'] or '-')[:19]}"
                )
        return 0
    if not args.run:
        raise UserError(f"'runs {args.action}' takes a run id; 'gpt2tui runs list' shows them.")
    run = get_run(args.run)
    if args.action == "show":
        print(json.dumps(_run_details(run), indent=None if args.json else 2))
    elif args.action == "attach":
        return _attach(run, stop_on_interrupt=False, as_json=args.json)
    elif args.action == "stop":
        launch.stop(run)
        print(
            json.dumps({"run": run.id, "stopping": True})
            if args.json
            else f"stopping run {run.id}: it saves a checkpoint and its model, then ends"
        )
    elif args.action == "resume":
        pid = launch.resume(run, force=args.force)
        print(
            json.dumps({"run": run.id, "pid": pid, "folder": str(run.folder)})
            if args.json
            else f"resumed run {run.id} (pid {pid}); follow it with 'gpt2tui runs attach {run.id}'"
        )
    else:
        remove_run(run, force=args.force)
        print(json.dumps({"removed": run.id}) if args.json else f"removed run {run.id}")
    return 0


def _run_details(run: Any) -> dict[str, Any]:
    from gpt2tui.core.checkpoints import complete_checkpoints
    from gpt2tui.core.events import event_to_dict

    events, _ = run.events()
    return {
        **_clean(run.summary()),
        "config": run.config(),
        "checkpoints": [
            {"step": c.step, "path": str(c.path)} for c in complete_checkpoints(run.checkpoints_dir)
        ],
        "last_events": [
            {"seq": r.seq, "time": r.time, **_clean(event_to_dict(r.event))}
            for r in events[-RUN_SHOW_EVENTS:]
        ],
    }


def cmd_generate(args: argparse.Namespace) -> int:
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.generation import load, stream

    configure_threads(args.threads)

    settings = _settings(args)
    loaded = load(args.model)
    template = None if args.raw else loaded.template
    reply_stream = stream(
        loaded.model, loaded.tokenizer, args.prompt, settings, template=template, stop_text=loaded.stop_text
    )
    if args.json:
        text = "".join(reply_stream)
        reply = reply_stream.reply
        print(
            json.dumps(
                {
                    "model": loaded.name,
                    "text": text,
                    "new_tokens": reply.new_tokens,
                    "seconds": reply.seconds,
                    "tokens_per_second": reply.tokens_per_second,
                    "seed": reply.seed,
                    "settings": settings.describe(),
                }
            )
        )
        return 0
    write_reply(reply_stream, sys.stdout)
    return 0


def write_reply(chunks: Iterable[str], out: TextIO) -> None:
    """Each chunk as it comes, then a newline. On a terminal a model's control characters are shown as
    symbols (an escape would start a sequence the terminal obeys); into a file or a pipe, the exact text."""
    from gpt2tui.core.visible import visible

    shown = visible if out.isatty() else str
    stream = iter(chunks)
    try:
        for chunk in stream:
            out.write(shown(chunk))
            out.flush()
    finally:  # a closed pipe: the generation stops before the process exits (core.generation)
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    out.write("\n")


class _EvalProgress:
    """``eval: 96/480 blocks (20%) · ETA 0:00:04`` on one terminal line, redrawn at most twice a second and
    ended with a newline when the last item is done (or the work stops early)."""

    def __init__(self, unit: str = "blocks") -> None:
        import time

        self.unit = unit
        self.clock = time.perf_counter
        self.started = self.last = self.clock()
        self.open = False

    def __call__(self, done: int, total: int) -> None:
        from gpt2tui.core.events import duration

        now = self.clock()
        if now - self.last < 0.5 and done < total:
            return
        self.last = now
        eta = (now - self.started) / max(done, 1) * (total - done)
        share = f" ({done / total:.0%})" if total else ""
        sys.stderr.write(f"\reval: {done}/{total} {self.unit}{share} · ETA {duration(eta)}  ")
        self.open = done < total
        sys.stderr.write("" if self.open else "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.open:
            sys.stderr.write("\n")
            self.open = False


def cmd_eval(args: argparse.Namespace) -> int:
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.evaluation import evaluate_file, store_result

    configure_threads(args.threads)
    progress = _EvalProgress() if sys.stderr.isatty() else None
    if args.generate < 0:
        raise UserError(f"--generate must be 0 or more, not {args.generate}.")
    settings = _settings(args)
    replies = _EvalProgress("replies") if sys.stderr.isatty() and args.generate else None
    result = evaluate_file(
        args.model,
        _spec(args),
        args.block_size,
        args.batch_size,
        progress,
        use_cache=args.data_cache,
        replies=args.generate,
        settings=settings,
        on_reply=replies,
        on_pack=_tokenizing_note(args.data, args.data_cache) if progress is not None else None,
    )
    for bar in (progress, replies):
        if bar is not None:
            bar.close()
    stored = store_result(args.model, _spec(args), result)
    scored = result.generation.replies if result.generation is not None else args.generate
    if scored < args.generate:  # asked for more prompts than the file has rows the model never trained on
        print(SHORT_OF_PROMPTS.format(scored=scored, asked=args.generate), file=sys.stderr)
    if args.json:
        print(json.dumps(_clean({**result.to_dict(), "stored_with": stored.name if stored else None})))
    else:
        print(
            f"loss {result.loss:.4f} | perplexity {result.perplexity:.2f} | {result.tokens} tokens "
            f"in {result.blocks} blocks | {result.tokens_per_second:,.0f} tok/s"
        )
        if result.generation is not None:
            print(_generation_line(result.generation))
        if stored is not None:
            print(f"stored with the model: gpt2tui models show {stored.name}")
    return 0


def _tokenizing_note(path: str, cached: bool) -> Callable[[], None]:
    """Says, on a terminal, that the file is being tokenized (an 11 MB file took ~30 s with nothing shown)."""

    def note() -> None:
        try:
            size = f" ({os.path.getsize(path) / 1e6:,.1f} MB)"
        except OSError:
            size = ""
        later = "; an unchanged file is read from the cache next time" if cached else " (--no-data-cache)"
        sys.stderr.write(f"tokenizing {os.path.basename(path)}{size}{later}…\n")
        sys.stderr.flush()

    return note


SHORT_OF_PROMPTS = (
    "{scored} replies scored, not {asked}: the file has only {scored} rows the model did not train on."
)


def _generation_line(m: Any) -> str:
    """The reply scores in one line; a figure that is undefined (no references, no tokens) shows as '-'."""

    def f(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return (
        f"{m.replies} replies | distinct-1 {f(m.distinct_1, '.3f')} | distinct-2 {f(m.distinct_2, '.3f')} | "
        f"repeated 4-grams {f(m.repeated_4gram_rate, '.3f')} | {f(m.mean_reply_tokens, '.1f')} tokens | "
        f"log-prob {f(m.mean_token_logprob, '.3f')} (perplexity {f(m.reply_perplexity, '.2f')}) | "
        f"ROUGE-L {f(m.rouge_l, '.3f')} | token F1 {f(m.token_f1, '.3f')} ({m.references} references)"
    )


def cmd_compare_decoding(args: argparse.Namespace) -> int:
    from gpt2tui.core.compare import cell_text, decoding_grid
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.generation import load

    configure_threads(args.threads)
    settings = _settings(args)
    loaded = load(args.model)
    if args.json:
        print(json.dumps([_clean(c.to_dict()) for c in decoding_grid(loaded, args.prompt, settings)]))
    else:
        decoding_grid(loaded, args.prompt, settings, on_cell=lambda cell: print(cell_text(cell), flush=True))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from gpt2tui.core.compare import cell_text, compare_models
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.generation import load_resolved, resolve

    configure_threads(args.threads)
    settings = _settings(args)
    first, second = (resolve(ref) for ref in args.models)  # both named correctly before either loads
    cells = compare_models(load_resolved(first), load_resolved(second), args.prompt, settings)
    if args.json:
        print(json.dumps([_clean(c.to_dict()) for c in cells]))
    else:
        for cell in cells:
            print(cell_text(cell))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.store import ModelStore

    store = ModelStore()
    needed = {"list": 0, "show": 1, "rename": 2, "rm": 1}[args.action]
    if len(args.names) != needed:
        raise UserError(
            f"'models {args.action}' takes {needed} name{'s' if needed != 1 else ''}, not {len(args.names)}."
        )
    if args.action == "list":
        infos = store.list(include_broken=True)
        if args.json:
            print(json.dumps([_clean(i.to_dict()) for i in infos]))
        elif not infos:
            print(f"No stored models in {store.root}; train one with 'gpt2tui train DATA'.")
        else:
            print(f"{'NAME':<32} {'BASE':<18} {'DATASET':<22} {'CREATED':<20} PERPLEXITY")
            for i in infos:
                print(_model_row(i))
    elif args.action == "show":
        info = store.get(args.names[0], allow_broken=True)
        if args.json:
            print(json.dumps(_clean(info.to_dict())))
        else:
            print(json.dumps(_clean(info.to_dict()), indent=2))
    elif args.action == "rename":
        info = store.rename(*args.names)
        print(json.dumps(_clean(info.to_dict())) if args.json else f"renamed {args.names[0]} to {info.name}")
    else:
        store.delete(args.names[0])
        print(json.dumps({"deleted": args.names[0]}) if args.json else f"deleted {args.names[0]}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gpt2tui.core.cache import Cache

    cache = Cache()
    if args.action == "clear":
        count, size = cache.clear()
        if args.json:
            print(json.dumps({"removed": count, "bytes": size}))
        else:
            print(
                f"removed {count} cache entr{'y' if count == 1 else 'ies'} ({size / 1e6:,.1f} MB) from {cache.root}"
            )
        return 0
    entries = cache.entries()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries]))
        return 0
    if not entries:
        print(f"The cache in {cache.root} is empty; training, eval and the dataset preview fill it.")
        return 0
    print(f"{'KIND':<11} {'KEY':<13} {'SIZE':>10} {'TOKENS':>13} {'LAST USED':<17} FILE")
    for e in entries:
        used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        tokens = f"{e.meta['tokens']:,}" if isinstance(e.meta.get("tokens"), int) else "-"
        source = e.meta.get("source", "?")
        print(f"{e.kind:<11} {e.key[:12]:<13} {e.bytes / 1e6:>7,.1f} MB {tokens:>13} {used:<17} {source}")
    total = sum(e.bytes for e in entries)
    print(
        f"{len(entries)} entries, {total / 1e6:,.1f} MB of the {cache.limit / 1e9:,.1f} GB cap ({cache.root})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C or SIGTERM; starlette and uvicorn are imported only here."""
    from gpt2tui.serve import API_KEY_ENV, run_server

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    return run_server(
        args.models,
        host=args.host,
        port=args.port,
        api_key=api_key,
        threads=args.threads,
        prompt_caches=args.prompt_caches,
    )


def cmd_push(args: argparse.Namespace) -> int:
    """Upload a stored model; the token is the Hub library's business and never passes through here."""
    from gpt2tui.core.hub import push_model

    result = push_model(args.model, args.repo_id, private=args.private)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(result.summary(asked_private=args.private))
    return 0


def _model_row(info: Any) -> str:
    """One line of ``models list``: a broken folder or unreadable fields are said, never fatal; a model whose run
    was stopped early says so, as on the home screen."""
    from pathlib import Path

    from gpt2tui.core.card import stopped_note

    meta = info.metadata
    if info.broken:
        return f"{info.name:<32} broken: {info.broken} (remove it with 'gpt2tui models rm {info.name}')"
    created = meta.created_at.strftime("%Y-%m-%d %H:%M") if meta.created_at else "?"
    dataset = Path(meta.dataset.path).name if meta.dataset.path else "?"
    before, after = meta.perplexity_before, meta.perplexity_after
    ppl = f"{before:.2f} -> {after:.2f}" if before is not None and after is not None else "?"
    stopped = stopped_note(meta)
    notes = [stopped] if stopped else []
    if meta.problems:
        notes.append(f"unreadable: {', '.join(meta.problems)}")
    note = f"  ({'; '.join(notes)})" if notes else ""
    return f"{info.name:<32} {meta.base or '?':<18} {dataset:<22} {created:<20} {ppl}{note}"


if __name__ == "__main__":
    raise SystemExit(main())
