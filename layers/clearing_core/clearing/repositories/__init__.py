"""Repositories: one per table or record family, over the ItemStore port.

Each owns the key layout (`keys`) and the item shapes of its records, and speaks domain objects and
typed values to the services: the services never build or pick apart a stored item by hand. Writes
are batched the way the services order them (one put_many per table and invocation, in the order
the exactly-once design needs: see each service's module docstring); a repository adds no store call
of its own. docs/data-model.md names the repository of every record.

- orders: validation decisions (acceptances, rejections) and order states (`OrderRecords`);
- trades: executed and cleared trades (`TradeRecords`);
- positions, obligations: clearing positions, net obligations, settlement instructions;
- state: checkpoints, book snapshots, the exposure ledger, clearing states;
- margin: margin runs and margin calls;
- reference: reference data (instruments, members, configuration).

Imports: the domain, the ports and each other; never the services or the adapters.
"""
