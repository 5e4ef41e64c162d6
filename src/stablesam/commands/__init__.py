"""Commands: what each `stablesam` subcommand runs, on top of evaluation, training and export."""
