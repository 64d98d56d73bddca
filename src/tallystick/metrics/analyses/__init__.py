"""One module per analysis; each defines a frozen dataclass subclassing ``Analysis``."""
