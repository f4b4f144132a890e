"""One module per `gpt2` subcommand; see `gpt2.cli`."""
