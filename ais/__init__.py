"""AIS, the Adaptable Installation System.

Descriptors (SCD/HCD XML) are the truth; a planner picks which partial images to
cache within a disk budget; a builder makes them from real RPM transactions; a
block streamer and a boot client reinstall machines from the nearest image plus
the remaining RPMs. Data flows one way: descriptors -> plan -> cache -> disk.
"""

__version__ = "0.1.0"
