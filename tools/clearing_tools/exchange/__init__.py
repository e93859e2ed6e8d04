"""The exchange simulator (a FIX acceptor) and its launcher in the local runtime."""
