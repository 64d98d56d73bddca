"""Collection: validate events, stamp them and make them durable before acknowledging."""
