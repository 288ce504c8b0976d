"""Read models built from the ledger's notification log (consent state, disclosure log, keys).

Empty until the projections issue lands; the ledger spine does not depend on it.
"""
