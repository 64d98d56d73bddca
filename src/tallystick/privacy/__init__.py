"""Privacy: what is removed from events before they are stored, and what may be published.

``secrets`` holds the installation's own secret; ``pii`` finds and removes personal data;
``pseudonym`` turns user ids into keyed pseudonyms; ``dp`` adds calibrated noise to published
aggregates. See docs/privacy.md and docs/differential-privacy.md.
"""
