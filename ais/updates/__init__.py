"""In-place updates: signed, sequence-numbered package deltas for groups of hosts (docs/updates.md)."""
