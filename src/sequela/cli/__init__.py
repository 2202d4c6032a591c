"""The `sequela` command's subcommands, one module each (main.py dispatches)."""
