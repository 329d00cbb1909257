"""The `mailq` command: the entry point, the operator monitor, `mailq up`, and display."""
