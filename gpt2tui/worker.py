"""``python -m gpt2tui.worker RUN_FOLDER [--resume]``: the process a run lives in (see core/launch.py)."""

from gpt2tui.core.launch import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
