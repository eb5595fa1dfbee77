"""CPU training against HF ``Trainer`` (issue 8, target 2), all in one run.

Every case is a fresh process with the same thread count (``--threads``): ours is ``gpt2tui train FILE
--base scratch --scratch-size SIZE --max-steps N --json`` (its training-loop tokens/s: evaluations and set-up
excluded), the reference is ``bench/trainer_reference.py`` (HF ``Trainer`` on the same scratch model, blocks,
batch 8 and steps; its loop alone, ``on_train_begin`` to ``on_train_end``, and its ``train_runtime``
figure). Cases are interleaved, the order rotating each round, and the median of ``--repeats`` is reported
with the load average seen, because a shared machine is noisy. Each process also times the CPU seconds of
its optimizer steps (median step): with one thread that figure hardly moves when other processes share the
cores, so ``--threads 1`` gives a steadier ratio on a busy machine.

    tiny  fp32   ours --mixed-precision no    vs Trainer fp32           (target >= 1.1x)
    small fp32   ours --mixed-precision no    vs Trainer fp32           (target >= 1.1x)
    small auto   ours --mixed-precision auto  vs Trainer fp32           (native bf16 CPUs: target >= 1.3x)
                                              and Trainer bf16=True     (for comparison)

Then a loss curve on small (``--curve-steps``, logged every 10 steps): ours in bf16 against fp32 with the
same seed, and fp32 with another seed as the noise reference. Last, training FLOP/s (nanoGPT's
``estimate_mfu``: 6·N + 12·n_layer·d_model·block per token, N without the position embeddings) against this
CPU's fp32 and bf16 matmul peak, measured here with the same threads (best of a 2048³ GEMM each round).
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "sample_data" / "kjv_sample.txt"
SHAPES = {"tiny": (2, 64, 256, 128), "small": (6, 384, 512, 256)}  # n_layer, d_model, n_positions, block
GEMM = 2048
OURS = """
import json, statistics, sys, time
from gpt2tui.core import training
cpu = []
real = training.Loop.optimizer_step
def timed(self):
    start = time.process_time()
    real(self)
    cpu.append(time.process_time() - start)
training.Loop.optimizer_step = timed
from gpt2tui.cli import main
code = main(sys.argv[1:])
print(json.dumps({"step_cpu_seconds": statistics.median(cpu[2:] or cpu)}))
raise SystemExit(code)
"""
"""``gpt2tui train`` exactly as the command runs it, also timing the CPU seconds of each optimizer step."""


@dataclass
class Case:
    """One kind of measurement, repeated each round."""

    name: str
    size: str
    kind: str  # "ours" | "trainer"
    precision: str  # ours: --mixed-precision; trainer: "fp32" | "bf16"
    rates: list[float] = field(default_factory=list)  # training-loop tokens/s
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the median optimizer step
    runtime_rates: list[float] = field(default_factory=list)  # Trainer's train_runtime figure
    loads: list[float] = field(default_factory=list)
    header: str = ""


def ours(
    file: Path, size: str, steps: int, threads: int, precision: str, seed: int = 42
) -> tuple[float, float, str, list[str]]:
    """A real ``gpt2tui train``: loop tokens/s, CPU seconds per step, its header line and its step lines."""
    with tempfile.TemporaryDirectory() as home:
        command = [sys.executable, "-c", OURS, "train", str(file), "--base", "scratch"]
        command += ["--scratch-size", size, "--max-steps", str(steps), "--json", "--save-every", "0"]
        command += ["--threads", str(threads), "--mixed-precision", precision, "--seed", str(seed)]
        command += ["--log-every", "10"]
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "GPT2TUI_HOME": home}, check=True
        )
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("training "))
    steps_logged = [line for line in lines if line.startswith("step ")]
    rate = float(json.loads(lines[-2])["tokens_per_second"])
    return rate, float(json.loads(lines[-1])["step_cpu_seconds"]), header, steps_logged


def trainer(file: Path, size: str, steps: int, threads: int, bf16: bool) -> tuple[float, float, float]:
    """HF Trainer (bench/trainer_reference.py, a fresh process): loop tokens/s, CPU seconds per step,
    train_runtime tokens/s."""
    script = Path(__file__).with_name("trainer_reference.py")
    command = [sys.executable, str(script), str(file), size, str(steps), str(threads), "--json"]
    done = subprocess.run(command + (["--bf16"] if bf16 else []), capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return (
        float(result["loop_tokens_per_second"]),
        float(result["step_cpu_seconds"]),
        float(result["tokens_per_second"]),
    )


def gemm_peak(dtype_name: str, repeats: int = 5) -> float:
    """Best GFLOP/s of a square GEMM in this process's threads (the probe a GPU run's MFU uses)."""
    import torch

    from gpt2tui.core.flops import matmul_peak

    return matmul_peak("cpu", getattr(torch, dtype_name), GEMM, repeats) / 1e9


def device_of(header: str) -> str:
    """The device label of a run header: ``CPU, 2 threads, bf16 (native AVX512_BF16)``."""
    found = re.search(r" parameters on (.*), \d+ steps, ", header)
    return found.group(1) if found else "?"


def flops_per_token(header: str, size: str) -> float:
    """nanoGPT/PaLM: 6·N (N without position embeddings) + 12·n_layer·d_model·block, per trained token
    (``core/flops.py``, as a run counts it), with N read from the run's header."""
    from types import SimpleNamespace

    from gpt2tui.core.flops import flops_per_token as per_token

    layers, width, positions, block = SHAPES[size]
    found = re.search(r": ([\d,]+) parameters", header)
    parameters = int(found.group(1).replace(",", "")) if found else 0
    shape = SimpleNamespace(n_layer=layers, n_embd=width, n_positions=positions)
    return per_token(shape, block, parameters)


def curve(file: Path, steps: int, threads: int) -> None:
    """bf16 against fp32 (same seed), with fp32 on another seed as the noise reference."""
    runs = {"fp32 seed 42": ("no", 42), "bf16 seed 42": ("bf16", 42), "fp32 seed 43": ("no", 43)}
    losses: dict[str, dict[int, float]] = {}
    for name, (precision, seed) in runs.items():
        rate, _, _, lines = ours(file, "small", steps, threads, precision, seed)
        losses[name] = {
            int(line.split()[1].split("/")[0]): float(line.split("loss ")[1].split()[0]) for line in lines
        }
        print(f"  curve {name}: {rate:,.0f} tok/s  load {os.getloadavg()[0]:.2f}", flush=True)
    points = sorted(losses["fp32 seed 42"])
    shown = [p for p in points if p in (10, 20, 50, 100, 150, 200) or p == points[-1]]
    print(
        f"\nloss curve, small, {steps} steps (each value: the mean training loss of the 10 steps before it)"
    )
    print(f"  {'step':>5}  " + "  ".join(f"{name:>13}" for name in runs))
    for p in shown:
        print(f"  {p:>5}  " + "  ".join(f"{losses[name][p]:>13.4f}" for name in runs))

    def relative(a: str, b: str, after: int) -> float:
        return max(abs(losses[a][p] - losses[b][p]) / losses[b][p] for p in points if p > after)

    for after in (0, 50) if points[-1] > 50 else (0,):
        bf16 = relative("bf16 seed 42", "fp32 seed 42", after)
        noise = relative("fp32 seed 43", "fp32 seed 42", after)
        verdict = "within" if bf16 <= noise else "NOT within"
        print(
            f"  max relative difference after step {after}: bf16 vs fp32 {bf16:.2%}; "
            f"noise (fp32, seed 43 vs 42) {noise:.2%} -> {verdict} noise"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny-steps", type=int, default=150)
    parser.add_argument("--small-steps", type=int, default=30)
    parser.add_argument("--curve-steps", type=int, default=200, help="0: no loss curve")
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--no-trainer-bf16", action="store_true", help="skip Trainer with bf16=True")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 cases only (no auto, no curve)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the GEMM peak below uses the same threads
    import torch

    from gpt2tui.core.device import cpu_flags, native_bf16

    torch.set_num_threads(args.threads)
    capability = torch.backends.cpu.get_cpu_capability()
    native, why = native_bf16(cpu_flags(), capability, torch.backends.mkldnn.is_available())
    print(
        f"cpu capability {capability}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, "
        f"native bf16: {native} ({why}), load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    steps = {"tiny": args.tiny_steps, "small": args.small_steps}
    cases = [
        Case("tiny fp32, Trainer", "tiny", "trainer", "fp32"),
        Case("tiny fp32, ours", "tiny", "ours", "no"),
        Case("small fp32, Trainer", "small", "trainer", "fp32"),
        Case("small fp32, ours", "small", "ours", "no"),
    ]
    bf16_cases = bool(native) and not args.no_bf16
    if bf16_cases:
        cases.append(Case("small auto, ours", "small", "ours", "auto"))
        if not args.no_trainer_bf16:
            cases.append(Case("small bf16, Trainer", "small", "trainer", "bf16"))
    peaks: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for round_ in range(args.repeats):
        for name in peaks:
            peaks[name].append(gemm_peak(name))
        order = cases[round_ % len(cases) :] + cases[: round_ % len(cases)]
        for case in order:
            load = os.getloadavg()[0]
            size_steps = steps[case.size]
            if case.kind == "ours":
                rate, cpu, case.header, _ = ours(
                    args.file, case.size, size_steps, args.threads, case.precision
                )
            else:
                bf16 = case.precision == "bf16"
                rate, cpu, runtime = trainer(args.file, case.size, size_steps, args.threads, bf16)
                case.runtime_rates.append(runtime)
            case.rates.append(rate)
            case.cpu.append(cpu)
            case.loads.append(max(load, os.getloadavg()[0]))
            print(
                f"  round {round_ + 1}: {case.name:<22} {rate:>9,.0f} tok/s  {cpu * 1e3:>8.1f} CPU ms/step"
                f"  load {case.loads[-1]:.2f}",
                flush=True,
            )

    rate = {case.name: statistics.median(case.rates) for case in cases}
    cpu = {case.name: statistics.median(case.cpu) for case in cases}
    print(f"\nmedian of {args.repeats} ({args.threads} threads): training-loop tokens/s; CPU ms per step")
    for case in cases:
        runtime = statistics.median(case.runtime_rates) if case.runtime_rates else None
        extra = f"  (Trainer's train_runtime figure: {runtime:,.0f} tok/s)" if runtime else ""
        print(
            f"  {case.name:<22} {rate[case.name]:>9,.0f} tok/s  runs {[round(r) for r in case.rates]}"
            f"  {cpu[case.name] * 1e3:>8.1f} ms  load {min(case.loads):.1f}-{max(case.loads):.1f}{extra}"
        )
    print("\nreference, ours, ratio (tokens/s; and by CPU time per step):")
    comparisons = [
        ("tiny fp32", "tiny fp32, Trainer", "tiny fp32, ours", 1.1),
        ("small fp32", "small fp32, Trainer", "small fp32, ours", 1.1),
        ("small auto vs Trainer fp32", "small fp32, Trainer", "small auto, ours", 1.3),
        ("small auto vs Trainer bf16", "small bf16, Trainer", "small auto, ours", None),
    ]
    for label, reference, mine, target in comparisons:
        if reference in rate and mine in rate:
            goal = f"  (target >= {target})" if target else ""
            print(
                f"  {label:<28} {rate[reference]:>9,.0f}  {rate[mine]:>9,.0f}  "
                f"{rate[mine] / rate[reference]:.2f}x;  CPU time {cpu[reference] / cpu[mine]:.2f}x{goal}"
            )
    for case in cases:
        if case.kind == "ours":
            print(f"  {case.name} ran on: {device_of(case.header)}")

    peak = {name: max(values) for name, values in peaks.items()}
    print(
        f"\nmatmul peak here ({GEMM}^3 GEMM, best of the rounds): fp32 {peak['float32']:.0f} GFLOP/s, "
        f"bf16 {peak['bfloat16']:.0f} GFLOP/s"
    )
    for case in cases:
        header = next((c.header for c in cases if c.size == case.size and c.header), "")
        if not header:
            continue
        per_token = flops_per_token(header, case.size)
        achieved = rate[case.name] * per_token / 1e9
        dtype = "bfloat16" if case.precision in ("auto", "bf16") and native else "float32"
        print(
            f"  {case.name:<22} {per_token / 1e6:6.1f} MFLOP/token  {achieved:6.1f} GFLOP/s  "
            f"{achieved / peak[dtype]:.0%} of the {dtype} peak"
        )
    if args.curve_steps and bf16_cases:
        curve(args.file, args.curve_steps, args.threads)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
