"""The headless CLI: argument parsing, calls into the core, printing, exit codes.

Heavy libraries are imported only inside the command that needs them, so ``gpt2tui --help`` is instant.
Every user error is one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from gpt2tui import __version__

EXIT_USAGE = 2


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


def build_parser() -> argparse.ArgumentParser:
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
    steps.add_argument("--epochs", type=float, default=3.0, help="passes over the data (default 3)")
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
    p.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"))
    _data_options(p)
    p.add_argument("--json", action="store_true", help="end with one JSON object on stdout")

    g = sub.add_parser("generate", help="generate text from a stored model, streamed to stdout")
    g.add_argument("model", metavar="MODEL", help="stored model name or model folder")
    g.add_argument("prompt", metavar="PROMPT")
    g.add_argument("--strategy", default="top-p", choices=("greedy", "beam", "top-k", "top-p"))
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=50)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--num-beams", type=int, default=4)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--seed", type=int)
    g.add_argument("--raw", action="store_true", help="do not apply the model's prompt template")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")

    e = sub.add_parser("eval", help="perplexity of a model on a dataset file")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--block-size", type=int)
    e.add_argument("--batch-size", type=whole_number, default=8)
    _data_options(e)
    e.add_argument("--json", action="store_true")

    m = sub.add_parser("models", help="list, show, rename or delete stored models")
    m.add_argument("action", nargs="?", default="list", choices=("list", "show", "rename", "rm"))
    m.add_argument("names", nargs="*", metavar="NAME")
    m.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gpt2tui.core.errors import UserError

    try:
        if args.command is None:
            from gpt2tui.ui.app import run

            run()
            return 0
        from gpt2tui.core.quiet import route_library_logs

        route_library_logs(None)
        commands = {"train": cmd_train, "generate": cmd_generate, "eval": cmd_eval, "models": cmd_models}
        return commands[args.command](args)
    except UserError as err:
        print(f"gpt2tui: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gpt2tui: Interrupted.", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or an environment problem: still one sentence, never a traceback
        if os.environ.get("GPT2TUI_DEBUG"):
            raise
        first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else "no details"
        print(
            f"gpt2tui: Unexpected error: {type(err).__name__}: {first} (set GPT2TUI_DEBUG=1 for a traceback).",
            file=sys.stderr,
        )
        return EXIT_USAGE


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


def _duration(seconds_float: float) -> str:
    seconds = round(seconds_float)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def cmd_train(args: argparse.Namespace) -> int:
    import signal
    import threading

    from gpt2tui.core.events import EvalFinished, RunStarted, StepLogged, TrainingEvent, event_to_dict
    from gpt2tui.core.training import TrainConfig, train

    config = TrainConfig(
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
    )

    def show(event: TrainingEvent) -> None:
        if isinstance(event, RunStarted):
            print(
                f"training {event.name}: {event.parameters:,} parameters on {event.device} "
                f"(precision {event.mixed_precision}), {event.total_steps} steps, {event.train_blocks} train / "
                f"{event.eval_blocks} eval blocks of {event.block_size} tokens",
                flush=True,
            )
        elif isinstance(event, StepLogged):
            print(
                f"step {event.step}/{event.total_steps} | epoch {event.epoch:.2f} | loss {event.loss:.4f} | "
                f"lr {event.learning_rate:.2e} | {event.tokens_per_second:,.0f} tok/s | "
                f"ETA {_duration(event.eta_seconds)}",
                flush=True,
            )
        elif isinstance(event, EvalFinished):
            when = "before training" if event.step == 0 else f"at step {event.step}"
            print(f"eval {when}: loss {event.loss:.4f} | perplexity {event.perplexity:.2f}", flush=True)

    stop = threading.Event()

    def first_interrupt(signum: int, frame: Any) -> None:
        """Ctrl+C ends the run at the next step and still saves; a second Ctrl+C aborts."""
        print("stopping at the next step (Ctrl+C again to abort without saving)", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        result = train(config, on_event=show, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0  # under accelerate launch, the main process reports
    verb = "stopped early; saved" if result.stopped else "saved"
    print(
        f"{verb} {result.name} at {result.path}: perplexity {result.perplexity_before:.2f} -> "
        f"{result.perplexity_after:.2f} in {_duration(result.seconds)} ({result.tokens_per_second:,.0f} tok/s)"
    )
    if args.json:
        summary = event_to_dict(result)
        del summary["event"]
        print(json.dumps(_clean({"model": summary.pop("name"), **summary})))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from gpt2tui.core.generation import GenerationSettings, load, stream

    settings = GenerationSettings(
        strategy=args.strategy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    ).validate()
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
    for chunk in reply_stream:
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from gpt2tui.core.evaluation import evaluate_file

    result = evaluate_file(args.model, _spec(args), args.block_size, args.batch_size)
    if args.json:
        print(json.dumps(_clean(result.to_dict())))
    else:
        print(
            f"loss {result.loss:.4f} | perplexity {result.perplexity:.2f} | {result.tokens} tokens "
            f"in {result.blocks} blocks"
        )
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
        infos = store.list()
        if args.json:
            print(json.dumps([_clean(i.to_dict()) for i in infos]))
        elif not infos:
            print(f"No stored models in {store.root}; train one with 'gpt2tui train DATA'.")
        else:
            print(f"{'NAME':<32} {'BASE':<18} {'DATASET':<22} {'CREATED':<20} PERPLEXITY")
            for i in infos:
                print(
                    f"{i.name:<32} {i.get('base', '?')!s:<18} {_dataset_name(i.metadata):<22} "
                    f"{str(i.get('created', '?'))[:19]:<20} {_ppl(i.metadata)}"
                )
    elif args.action == "show":
        info = store.get(args.names[0])
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


def _dataset_name(meta: dict[str, Any]) -> str:
    from pathlib import Path

    path = (meta.get("dataset") or {}).get("path")
    return Path(path).name if path else "?"


def _ppl(meta: dict[str, Any]) -> str:
    before, after = meta.get("perplexity_before"), meta.get("perplexity_after")
    if before is None or after is None:
        return "?"
    return f"{before:.2f} -> {after:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
