"""GPU training against HF ``Trainer`` (issue 8, target 3): model FLOPs utilisation of the GPT-2 124M shape.

Every case is a fresh process on the same GPU and data: ours is ``gpt2tui train FILE --base scratch
--scratch-size gpt2 --block-size 1024 --mixed-precision bf16 --json`` (its training-loop tokens/s, evaluations
and set-up excluded; ``torch.compile`` on by default on a GPU, ``--no-compile`` adds the case without it),
the reference ``bench/trainer_reference.py FILE gpt2 STEPS 0 --bf16 --device cuda`` (HF ``Trainer`` with
``TrainingArguments(bf16=True)``, the same scratch model, packed blocks, batch and steps). Cases are
interleaved, the median of ``--repeats`` reported.

MFU is achieved training FLOP/s (6·N + 12·n_layer·d_model·block per token, N without the position
embeddings: ``core/flops.py``) over this card's dense bf16 matmul peak, *measured here* before every round
(best of a few 8192² matmuls), not a datasheet figure. The target is MFU >= 45% (llm.c reports ~50-60%).

Without a CUDA GPU it says so and measures nothing (exit 2); ``--allow-cpu`` runs the same cases on the CPU
with a small shape, as a check of the script itself.

    python bench/gpu_training.py [--steps 60] [--batch-size 16] [--repeats 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the checkout this script is in
DEFAULT_FILE = ROOT.parent / "shared" / "corpora" / "kjv.txt"
TARGET_MFU = 0.45


def ours(args: argparse.Namespace, extra: list[str]) -> tuple[float, dict[str, str]]:
    """A real ``gpt2tui train``: its loop tokens/s and what its last step line says (MFU, peak memory)."""
    with tempfile.TemporaryDirectory() as home:
        command = [sys.executable, "-m", "gpt2tui", "train", str(args.file), "--base", "scratch"]
        command += ["--scratch-size", args.size, "--block-size", str(args.block_size)]
        command += ["--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--json"]
        command += ["--save-every", "0", "--log-every", "10", "--eval-split", "0.01"]
        command += ["--mixed-precision", args.precision, *extra]
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "GPT2TUI_HOME": home}, check=True
        )
    lines = done.stdout.splitlines()
    header = next((line for line in lines if line.startswith("training ")), "")
    last_step = [line for line in lines if line.startswith("step ")][-1]
    figures = dict(re.findall(r"(MFU|peak) ([\d.]+ ?(?:%|GB))", last_step))
    figures["header"] = header
    return float(json.loads(lines[-1])["tokens_per_second"]), figures


def trainer(args: argparse.Namespace) -> float:
    """HF Trainer, bf16, on the GPU (``bench/trainer_reference.py`` in a fresh process): loop tokens/s."""
    script = Path(__file__).with_name("trainer_reference.py")
    threads = str(os.cpu_count() or 1)
    command = [sys.executable, str(script), str(args.file), args.size, str(args.steps), threads, "--json"]
    command += ["--block-size", str(args.block_size), "--batch-size", str(args.batch_size)]
    command += ["--device", args.device] + (["--bf16"] if args.precision == "bf16" else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["loop_tokens_per_second"])


def per_token(args: argparse.Namespace) -> float:
    """Training FLOPs per token of the scratch shape (the same count the run reports its MFU with)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2tui.core.flops import flops_per_token
    from gpt2tui.core.models import check_scratch_size

    shape = check_scratch_size(args.size)
    config = GPT2Config(
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        n_embd=shape.n_embd,
        n_positions=shape.n_positions,
        vocab_size=shape.vocab_size,
    )
    with __import__("torch").device("meta"):
        parameters = sum(p.numel() for p in GPT2LMHeadModel(config).parameters())
    return flops_per_token(config, args.block_size, parameters)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--size", default="gpt2", help="scratch shape (default: GPT-2 124M)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="also measure ours without torch.compile")
    parser.add_argument("--allow-cpu", action="store_true", help="no GPU: run the cases on the CPU anyway")
    args = parser.parse_args()
    import torch

    from gpt2tui.core.flops import matmul_dtype, matmul_peak

    if torch.cuda.is_available():
        args.device, args.precision = "cuda", "bf16"
        print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    elif args.allow_cpu:
        args.device, args.precision = "cpu", "no"
        print(f"no GPU: the cases on the CPU ({torch.backends.cpu.get_cpu_capability()}), fp32")
    else:
        print("No CUDA GPU on this machine: nothing measured (run it where one is, or --allow-cpu).")
        raise SystemExit(2)
    flops = per_token(args)
    print(
        f"shape {args.size}, block {args.block_size}, batch {args.batch_size}, {args.steps} steps; "
        f"{flops / 1e9:.3f} GFLOP per trained token"
    )
    cases: dict[str, list[float]] = {"reference: HF Trainer": [], "ours": []}
    if args.no_compile:
        cases["ours, --no-compile"] = []
    peaks: list[float] = []
    seen: dict[str, str] = {}
    for round_ in range(args.repeats):
        peaks.append(matmul_peak(args.device, matmul_dtype(args.precision)))
        cases["reference: HF Trainer"].append(trainer(args))
        rate, seen = ours(args, [])
        cases["ours"].append(rate)
        if args.no_compile:
            cases["ours, --no-compile"].append(ours(args, ["--compile", "off"])[0])
        print(
            f"round {round_ + 1}: peak {peaks[-1] / 1e12:.1f} TFLOP/s; "
            + "; ".join(f"{name} {rates[-1]:,.0f} tok/s" for name, rates in cases.items())
        )
    peak = statistics.median(peaks)
    reference = statistics.median(cases["reference: HF Trainer"])
    print(f"\nmatmul peak measured here ({matmul_dtype(args.precision)}, 8192²): {peak / 1e12:.1f} TFLOP/s")
    print(seen.get("header", ""))
    for name, rates in cases.items():
        rate = statistics.median(rates)
        print(
            f"  {name:22s} {rate:10,.0f} tok/s   MFU {rate * flops / peak:6.1%}   "
            f"x{rate / reference:.2f} the reference"
        )
    print(
        f"  ours as the run reports it: MFU {seen.get('MFU', '-')}, peak memory {seen.get('peak', '-')} "
        f"(target MFU >= {TARGET_MFU:.0%})"
    )


if __name__ == "__main__":
    main()
