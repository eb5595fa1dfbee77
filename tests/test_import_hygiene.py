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
    "hub",
    "kv_cache",
    "generator",
    "launch",
    "metrics",
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
        "heavy = [m for m in ('textual', 'torch', 'transformers', 'datasets', 'accelerate', 'huggingface_hub',"
        " 'rouge_score', 'nltk') if m in sys.modules]\n"
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


def test_screens_never_import_other_screens() -> None:
    """Navigation is the App's: a screen asks for another with a message, so no screen imports another.

    Shared modal dialogs are widgets (``gpt2tui/ui/widgets/dialogs.py``), not screens of the navigation.
    """
    import ast
    from pathlib import Path

    import gpt2tui.ui.screens

    folder = Path(gpt2tui.ui.screens.__file__).parent
    screens = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    assert {"home", "dataset", "setup", "monitor", "chat"} <= screens
    offences = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
                if node.level:  # a relative import: "from . import home", "from .home import X"
                    names = [alias.name for alias in node.names] + [node.module or ""]
                    names = [f"gpt2tui.ui.screens.{name}" for name in names if name]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                other = parts[3] if parts[:3] == ["gpt2tui", "ui", "screens"] and len(parts) > 3 else None
                if other in screens and other != path.stem:
                    offences.append(f"{path.name}:{node.lineno} imports {name}")
    assert offences == []
