"""``python -m router`` is the ``nodrute`` command."""

from .cli import app

app()
