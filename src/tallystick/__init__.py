"""Tallystick: self-hosted product metrics and experimentation."""
