"""``python -m zoo.cli`` (and ``torchrun -m zoo.cli train ...``)."""

from zoo.cli.main import main

main()
