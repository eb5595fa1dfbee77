"""``python -m gpt2tui`` is the same as the ``gpt2tui`` command."""

from gpt2tui.cli import main

raise SystemExit(main())
