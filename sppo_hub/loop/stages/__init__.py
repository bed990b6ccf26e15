"""The stages of an SPPO iteration, one module each; `sppo_hub.loop.run.algorithm_1` calls them in order.

Every stage is a function `stage(ctx, t, timer, *inputs) -> artifacts` (a JSON-serialisable dict that
the run manifest records): `ctx` is the run's `RunContext` (config, manifest, console, endpoint),
`t` the iteration (0 for the run-level setup stages), `timer.computing()` marks model compute, and
`inputs` are the artifacts of the earlier stages it reads. `context.run_stage` decides which
process runs it and skips it when the manifest already holds it.
"""
