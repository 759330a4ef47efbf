"""The recorder: the fleet's money ledger, stock, history and statistics in a SQL database."""
