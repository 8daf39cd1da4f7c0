"""What survives a crash: the file ledger in ``state.db`` and the claims in ``processing/``."""
