"""The Parquet lake: its files, their content hashes, and the module that reads and writes them."""
