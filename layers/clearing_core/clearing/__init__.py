"""Clearing-house trade pipeline: the core package shipped as the Lambda layer (ClearingCoreLayer).

domain/   pure trade logic (order contract, pre-trade risk, matching, clearing, margin): no I/O
services/ the use cases each Lambda runs over one MSK batch, written against ports
adapters/ DynamoDB, Kafka, FIX-proxy client and in-memory implementations of the ports
api/      the member API (functions/query_api)
fix/      what the exchange_gateway Lambda needs of FIX: the proxy client and its wire protocol

The FIX proxy is clearing_fix (proxy/, its own image); the local runtime, CLI, benchmarks and
simulators are clearing_tools (tools/). Neither is imported from here (tests/unit/test_dependency_rule.py).
"""

__version__ = "0.1.0"
