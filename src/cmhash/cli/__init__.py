"""The ``cmhash`` command line: ``app`` holds the group and shared option parsers; ``train``
(train, evaluate, sweep), ``demo``, ``encode``, ``index`` (build, add, remove, info) and ``search``
(search, serve) and ``tables`` add their commands. Commands parse and print; the work is the library's."""
from . import demo, encode, index, search, tables, train  # noqa: F401  (registration of the commands)
from .app import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
