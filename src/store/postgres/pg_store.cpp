// PostgreSQL store: in progress.
