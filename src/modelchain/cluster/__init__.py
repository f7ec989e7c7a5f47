"""A cluster of nodes sharing one ledger through etcd: configuration, etcd
members and the development cluster."""
