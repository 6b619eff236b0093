"""One thin Typer command per DVC stage. Run as `python -m stages.<name>` or `mt <name>`."""
