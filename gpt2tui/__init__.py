"""gpt2tui: fine-tune GPT-2 on your own data and talk to the result, from the terminal."""

__version__ = "0.1.0"
