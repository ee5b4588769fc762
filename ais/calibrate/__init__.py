"""Calibration: measure this machine the way the client installs, and fit the cost
model the planner plans with (`ais calibrate`). It may use the client's disk
steps, the cache's builder and the streamer; nothing but the CLI imports it."""
