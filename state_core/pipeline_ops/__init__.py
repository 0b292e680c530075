"""Decisions and bookkeeping that only the pipelines need (promotion gate, publish records, schedules).

Plain Python without KFP imports, so every rule here is unit tested on its own and the KFP components in
`components/` stay one-line wrappers around these functions.
"""
