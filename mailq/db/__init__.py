"""The database: named SQL statements, one module per table that calls them, the schema check,
and the embedded PostgreSQL."""
