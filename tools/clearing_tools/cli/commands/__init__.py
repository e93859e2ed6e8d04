"""Subcommands of `clearing`: every module here with a `register(subparsers)` is picked up."""
