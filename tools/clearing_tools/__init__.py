"""Tools around the pipeline, never shipped to Lambda: the local runtime (local/), the `clearing`
CLI (cli/), benchmarks (bench/), the exchange simulator and its local launcher (exchange/), the cost
model and the template model. Depends on the clearing core and clearing_fix."""
