"""Use cases: what each Lambda does with one MSK batch, written against clearing.ports."""
