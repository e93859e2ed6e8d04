"""Clearing-house trade pipeline: the core package shipped as a Lambda layer.

domain/   pure trade logic (order contract, pre-trade risk, matching, clearing, margin): no I/O
services/ the use cases each Lambda runs over one MSK batch, written against ports
adapters/ DynamoDB, Kafka, FIX-proxy and in-memory implementations of the ports
local/    the local runtime (broker, moto_server, event-source mappings, OMS simulator)
cli/      the `clearing` command
"""

__version__ = "0.1.0"
