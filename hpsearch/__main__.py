"""``python -m hpsearch``: the same CLI as the ``hpsearch`` command."""

from hpsearch.cli import main

main()
