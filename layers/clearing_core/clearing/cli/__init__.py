"""The `clearing` command line."""
