"""The ``cmhash`` command line: ``app`` holds the group and shared option parsers; ``train``
(train, evaluate, sweep), ``demo`` and ``search`` (encode, index, search, serve) add their commands."""
from . import demo, search, train  # noqa: F401  (registration of the commands)
from .app import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
