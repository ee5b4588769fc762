"""The planner: which package-set images to cache within a disk budget.

Entry points: `ais.planner.plan.make_plan(site, budget_bytes, ...)` -> `Plan`,
`ais plan` (ais/planner/commands.py). See docs/planner.md.
"""
