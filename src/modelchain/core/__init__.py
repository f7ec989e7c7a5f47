"""Pure core: canonical JSON, Merkle trees, notes, DSSE, identities, transactions.

Nothing in this package touches files, the network, the clock or globals.
"""
