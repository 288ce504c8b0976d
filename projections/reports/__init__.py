"""Subject access reports (GDPR art. 15) and portability exports (art. 20).

``model`` is the report (versioned, its JSON Schema shipped as
``docs/subject-report.schema.json``), ``assemble`` builds it from the views and the subject's
events in the ledger, ``pdf`` renders it for people, and ``service`` generates one and records
the generation in the ledger before anything is delivered.
"""
