"""Feature flags and experiment assignment, as pure functions of a ruleset and a unit's attributes.

- :mod:`tallystick.flags.hashing`: GrowthBook-compatible deterministic assignment (FNV-1a hash
  versions 1 and 2, bucket ranges, namespaces);
- :mod:`tallystick.flags.conditions`: attribute conditions, parsed then compiled to predicates;
- :mod:`tallystick.flags.evaluate`: rulesets (flags, environments, rules, kill switch), compiled
  per environment and evaluated locally;
- :mod:`tallystick.flags.header`: the ``X-Tally-Flags`` response header listing the flags and
  variations a response was made with.

See ``docs/flags.md``.
"""
