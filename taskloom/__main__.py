"""`python -m taskloom`: the same CLI as the `taskloom` command."""

from taskloom.cli import main

main()
