"""One module per ``engramloop`` subcommand (discovered automatically by controller.cli)."""
