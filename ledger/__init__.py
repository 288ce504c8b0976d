"""The compliance ledger: domain model, application service, crypto and CLI."""
