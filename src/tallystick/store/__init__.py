"""Storage: the fsync'd spool, the Parquet lake, the loader between them and the reader on top."""
