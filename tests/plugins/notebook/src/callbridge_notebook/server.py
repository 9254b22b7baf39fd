"""Deprecated import name of the notebook sandbox: use ``callbridge.examples.notebook.sandbox``."""

from callbridge.examples.notebook.sandbox import NotebookState, create_app

__all__ = ["NotebookState", "create_app"]
