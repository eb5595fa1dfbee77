"""``gpt2tui serve`` under load: 50 requests from 8 concurrent clients against sequential raw ``generate``.

One model (a GPT-2 of the ``small`` scratch shape by default, untrained, with a byte-level BPE trained on
``sample_data/kjv_sample.txt``), saved to a temporary folder and served by a real ``gpt2tui serve FOLDER``
process on a free loopback port. 50 different prompts (KJV passages), greedy decoding (``temperature`` 0),
``max_tokens`` N. Three measurements, on the same machine and thread count:

* reference: raw ``model.generate`` in this process, the 50 prompts one after another (``inference_mode``,
  greedy, ``max_new_tokens`` N, no streamer);
* sequential: one client sends the 50 requests to the server one after another (streaming);
* concurrent: 8 clients (threads, ``http.client``) share the 50 requests, each sending its next one as soon
  as its last one ended (streaming, ``stream_options.include_usage``).

Per request: latency (request sent → ``data: [DONE]``) and time to the first text chunk; errors are any
status other than 200, a missing ``[DONE]`` or an error event. Aggregate tokens/s = completion tokens (from
the usage chunks) / wall time of the whole phase. The replies are checked against the reference's text
(greedy: they must be equal). Prints a Markdown table and one JSON line.

Run: ``python bench/serve_load.py`` (``--size small --requests 50 --clients 8 --tokens 64 --threads 2``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the checkout this script is in, not another install of gpt2tui
CORPUS = ROOT / "sample_data" / "kjv_sample.txt"


def prompts(count: int) -> list[str]:
    """``count`` different passages' openings (about 20 words each)."""
    passages = [p for p in CORPUS.read_text(encoding="utf-8").split("\n\n") if len(p.split()) > 25]
    return [" ".join(p.split()[:20]) for p in passages[:count]]


def build(size: str, folder: Path) -> None:
    from gpt2tui.core.models import build_scratch

    model, tokenizer = build_scratch([CORPUS.read_text(encoding="utf-8")], size, 0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def reference(folder: Path, texts: list[str], tokens: int) -> tuple[float, list[float], list[str], int]:
    """Raw ``generate``, one prompt after another: wall seconds, per-prompt seconds, texts, new tokens."""
    import torch

    from gpt2tui.core.models import load_model

    model, tokenizer = load_model(folder)
    eos = tokenizer.eos_token_id
    kwargs = {"max_new_tokens": tokens, "do_sample": False, "pad_token_id": eos, "eos_token_id": eos}
    with torch.inference_mode():  # warm-up
        ids = torch.tensor([tokenizer(texts[0], add_special_tokens=False)["input_ids"]])
        model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    seconds, replies, new = [], [], 0
    started = time.perf_counter()
    for text in texts:
        begin = time.perf_counter()
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        generated = out[0, ids.shape[1] :]
        replies.append(tokenizer.decode(generated, skip_special_tokens=True))
        new += int(generated.shape[0])
        seconds.append(time.perf_counter() - begin)
    return time.perf_counter() - started, seconds, replies, new


def one_request(port: int, model: str, prompt: str, tokens: int) -> dict[str, Any]:
    """A streaming completion over raw HTTP: latency, first chunk, text, tokens, and any error."""
    body = json.dumps(
        {
            "model": model,
            "prompt": prompt,
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    result: dict[str, Any] = {"error": None, "first": None, "text": "", "tokens": 0}
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            result["error"] = f"HTTP {response.status}: {response.read()[:200]!r}"
            return result
        done = False
        while True:
            line = response.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[len(b"data: ") :]
            if data == b"[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                result["error"] = chunk["error"]["message"]
                break
            if chunk.get("usage"):
                result["tokens"] = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice["text"] and result["first"] is None:
                    result["first"] = time.perf_counter() - started
                result["text"] += choice["text"]
        if not done and result["error"] is None:
            result["error"] = "the stream ended without data: [DONE]"
    except Exception as err:  # a failed request is counted, not fatal
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        connection.close()
        result["latency"] = time.perf_counter() - started
    return result


def load_phase(
    port: int, model: str, texts: list[str], tokens: int, clients: int, log: Path
) -> dict[str, Any]:
    """``clients`` threads share the requests; each sends its next one when its last one has ended. The
    server's log of the phase gives the seconds it spent generating (its per-request lines)."""
    offset = log.stat().st_size
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(texts)):
        todo.put(i)
    results: dict[int, dict[str, Any]] = {}

    def client() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            results[i] = one_request(port, model, texts[i], tokens)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = [results[i] for i in range(len(texts))]
    time.sleep(0.5)  # the last request's log line is written just after its reply
    with log.open("rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace")
    generating = sum(float(m) for m in re.findall(r"new tokens in ([\d.]+) s", lines))
    return {"wall": wall, "results": ordered, "generating": generating}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(
    name: str, wall: float, latencies: list[float], tokens: int, firsts: list[float] | None
) -> dict[str, Any]:
    return {
        "case": name,
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "first_p50_s": statistics.median(firsts) if firsts else None,
        "first_p95_s": percentile(firsts, 0.95) if firsts else None,
    }


def generating(row: dict[str, Any]) -> str:
    """How much of the phase the server spent generating, and its tokens/s while it did."""
    if not row.get("generating_s"):
        return "-"
    return f"{row['generating_s'] / row['wall_s']:.0%}, {row['generation_tokens_per_s']:,.0f}"


def machine() -> dict[str, Any]:
    import torch

    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "gpt2"), help="scratch shape")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three measurements, interleaved")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from gpt2tui.core.quiet import quiet_environment, quiet_transformers

    quiet_environment()
    import torch

    torch.set_num_threads(args.threads)
    quiet_transformers()
    texts = prompts(args.requests)
    assert len(texts) == args.requests, f"only {len(texts)} passages"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"bench-{args.size}"
        build(args.size, folder)
        env = {**os.environ, "GPT2TUI_HOME": str(Path(tmp) / "home"), "HF_HUB_OFFLINE": "1"}
        log_path = Path(tmp) / "server.log"
        log = open(log_path, "w+b")  # noqa: SIM115
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpt2tui",
                "serve",
                str(folder),
                "--port",
                "0",
                "--threads",
                str(args.threads),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            port = 0
            while True:
                line = server.stdout.readline().decode()
                if not line:
                    log.seek(0)
                    raise SystemExit(f"the server ended: {log.read().decode()[-2000:]}")
                found = re.search(r":(\d+)/v1", line)
                port = int(found.group(1)) if found else port
                if ": ready in" in line:
                    break
            name = folder.name
            one_request(port, name, texts[0], 4)  # warm-up of the server's first request

            rounds: list[dict[str, Any]] = []
            for _ in range(args.rounds):  # interleaved: a shared machine's load drifts between phases
                ref_wall, ref_seconds, ref_texts, ref_tokens = reference(folder, texts, args.tokens)
                rounds.append(
                    {
                        "reference": (ref_wall, ref_seconds, ref_texts, ref_tokens),
                        "sequential": load_phase(port, name, texts, args.tokens, 1, log_path),
                        "concurrent": load_phase(port, name, texts, args.tokens, args.clients, log_path),
                    }
                )
        finally:
            server.terminate()
            server.wait(60)
            log.close()

    rows = []
    errors: dict[str, list[Any]] = {}
    mismatches: dict[str, int] = {}
    for number, measured in enumerate(rounds, 1):
        ref_wall, ref_seconds, ref_texts, ref_tokens = measured["reference"]
        rows.append(
            summary(f"{number}: reference, raw generate, sequential", ref_wall, ref_seconds, ref_tokens, None)
        )
        reference_rate = rows[-1]["tokens_per_s"]
        phases = (
            ("serve, 1 client", measured["sequential"]),
            (f"serve, {args.clients} clients", measured["concurrent"]),
        )
        for label, phase in phases:
            results = phase["results"]
            label = f"{number}: {label}"
            errors[label] = [r["error"] for r in results if r["error"]]
            mismatches[label] = sum(1 for r, ref in zip(results, ref_texts, strict=True) if r["text"] != ref)
            good = [r for r in results if not r["error"]]
            row = summary(
                label,
                phase["wall"],
                [r["latency"] for r in good],
                sum(r["tokens"] for r in good),
                [r["first"] for r in good if r["first"] is not None],
            )
            row["vs_reference"] = row["tokens_per_s"] / reference_rate
            row["generating_s"] = phase["generating"]
            row["generation_tokens_per_s"] = (
                row["tokens"] / phase["generating"] if phase["generating"] else None
            )
            rows.append(row)

    info = machine()
    params = f"size {args.size}, {args.requests} requests, max_tokens {args.tokens}, greedy, {args.threads} threads"
    print(f"machine: {info}")
    print(params)
    print()
    print(
        "| case | wall | tokens | tokens/s | vs reference | p50 latency | p95 latency | first chunk p50 / p95 "
        "| server generating: share of wall, tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        first = (
            f"{row['first_p50_s'] * 1000:,.0f} / {row['first_p95_s'] * 1000:,.0f} ms"
            if row["first_p50_s"] is not None
            else "-"
        )
        print(
            f"| {row['case']} | {row['wall_s']:.2f} s | {row['tokens']:,} | {row['tokens_per_s']:,.0f} | "
            f"{row.get('vs_reference', 1.0):.2f}× | {row['p50_s'] * 1000:,.0f} ms | "
            f"{row['p95_s'] * 1000:,.0f} ms | {first} | {generating(row)} |"
        )
    print()
    print("Median over the rounds (the ratio is taken within each round, then the median):")
    print()
    print(
        "| case | tokens/s | vs reference | p50 latency | p95 latency | first chunk p50 / p95 "
        "| server generating: share of wall, tokens/s |"
    )
    print("|---|---|---|---|---|---|---|")
    kinds = sorted(
        {row["case"].split(": ", 1)[1] for row in rows},
        key=lambda k: [r["case"].split(": ", 1)[1] for r in rows].index(k),
    )
    medians = []
    for kind in kinds:
        same = [row for row in rows if row["case"].split(": ", 1)[1] == kind]

        def median(key: str, same: list[dict[str, Any]] = same) -> float | None:
            values = [row[key] for row in same if row.get(key) is not None]
            return statistics.median(values) if values else None

        medians.append(
            {
                "case": kind,
                **{
                    k: median(k)
                    for k in (
                        "tokens_per_s",
                        "vs_reference",
                        "p50_s",
                        "p95_s",
                        "first_p50_s",
                        "first_p95_s",
                        "generating_s",
                        "wall_s",
                        "generation_tokens_per_s",
                    )
                },
            }
        )
        m = medians[-1]
        first = (
            f"{m['first_p50_s'] * 1000:,.0f} / {m['first_p95_s'] * 1000:,.0f} ms"
            if m["first_p50_s"] is not None
            else "-"
        )
        print(
            f"| {kind} | {m['tokens_per_s']:,.0f} | {m['vs_reference'] or 1.0:.2f}× | {m['p50_s'] * 1000:,.0f} ms | "
            f"{m['p95_s'] * 1000:,.0f} ms | {first} | {generating(m)} |"
        )
    print()
    for label in errors:
        print(
            f"{label}: {len(errors[label])} errors {errors[label][:3]}, {mismatches[label]} replies unlike the reference"
        )
    print(
        json.dumps(
            {
                "machine": info,
                "params": vars(args),
                "rows": rows,
                "medians": medians,
                "errors": errors,
                "mismatches": mismatches,
            }
        )
    )


if __name__ == "__main__":
    main()
