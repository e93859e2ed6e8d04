"""What the exchange_gateway Lambda needs of FIX: the proxy client and the gateway wire protocol.

The FIX proxy itself (session, store, messages, publisher) is the clearing_fix package (proxy/)."""
