"""The ``zoo`` command (click): parse, one library call, print. Imports torch only inside the commands
that need it."""
