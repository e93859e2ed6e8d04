"""The FIX proxy (its own container image, proxy/Dockerfile): the FIX session to the exchange, its
store, the FIX messages and the publisher of executions to Kafka. Depends on the clearing core only."""
