"""Adapters: implementations of clearing.ports for DynamoDB, Kafka and memory."""
