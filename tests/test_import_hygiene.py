"""The core never imports textual; the CLI's --help and the core's light modules import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE_MODULES = [
    "card",
    "checkpoints",
    "config",
    "data",
    "events",
    "errors",
    "evaluation",
    "files",
    "generation",
    "launch",
    "models",
    "procs",
    "quiet",
    "runs",
    "store",
    "training",
]


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_neither_textual_nor_torch(module: str) -> None:
    run = python(
        f"import sys, gpt2tui.core.{module}\n"
        "heavy = [m for m in ('textual', 'torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


def test_help_imports_no_torch() -> None:
    run = python(
        "import sys\nfrom gpt2tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'datasets', 'textual') if m in sys.modules])"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_core_sources_never_mention_textual() -> None:
    from pathlib import Path

    import gpt2tui.core

    for path in Path(gpt2tui.core.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import textual" not in text and "from textual" not in text, path
