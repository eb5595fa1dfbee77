"""One screen per module; each module's styles live beside it in ``<name>.tcss``."""
