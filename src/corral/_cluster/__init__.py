"""Actors across processes and machines, on NATS JetStream (the ``cluster`` extra)."""
