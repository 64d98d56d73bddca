"""Tallystick: self-hosted product metrics and experimentation.

The public Python API::

    from tallystick import Tracker

    with Tracker("http://127.0.0.1:8000", app_id="research-portal") as tracker:
        tracker.track("project.commit", user_id="u-1", session_id="s-1", data={"files": 3})
"""

from tallystick.sdk import Tracker, TrackerStats
from tallystick.version import __version__

__all__ = ["Tracker", "TrackerStats", "__version__"]
