"""The bottom layer: mechanics every other package shares (files, hashes, devices).

It imports nothing from the project, so `sources`, `features`, `lacp`, `stages` and
`pipeline` can all depend on it without a cycle.
"""
