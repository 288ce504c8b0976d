"""Plumbing every process shares and that knows nothing of the ledger.

Owns structured logs without personal fields (``logs``), retry schedules (``backoff``),
secrets given as a variable or a file (``secret_files``), the error a wrong setting raises
(``errors``) and child processes that die with their parent (``children``). It sits at the
bottom of the layers. May import nothing of ours.
"""
