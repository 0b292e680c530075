"""The `state` command line: argument parsing only; every command calls one library function."""
