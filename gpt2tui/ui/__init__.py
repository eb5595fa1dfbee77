"""The Textual app: models, dataset picker, fine-tune setup, run monitor and chat.

Nothing here imports torch or transformers at module level, so the first frame appears at once; the app
warms those libraries up in a background thread after it has drawn.
"""
