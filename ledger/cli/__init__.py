"""The ``ledger`` command line.

Thin commands: each decodes its arguments, calls the functions of one concern and reports,
with a message and a non-zero exit status for what it cannot do (``common`` holds what they
share). May import every layer below it.
"""
