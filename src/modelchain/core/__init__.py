"""Pure core: canonical JSON, Merkle trees, notes, checkpoints and their policies,
DSSE, identities, transactions.

Nothing in this package touches files, the network, the clock or globals.
"""
