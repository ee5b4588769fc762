"""The agent on an installed host: keeps it current with its groups' updates, from peers (docs/updates.md)."""
