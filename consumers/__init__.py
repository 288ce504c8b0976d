"""Kafka processes: ingest (Kafka → ledger) and relay (ledger → Kafka)."""
