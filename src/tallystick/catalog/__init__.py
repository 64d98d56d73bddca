"""The catalog: every field ever seen in the lake, personal-data detection, and search.

``personal`` (pure) says which fields look personal and redacts example values; ``fields``
computes the field catalog from the lake and keeps it in the control store; ``search`` ranks
streams, fields and metric catalog entries for a text.
"""
