"""The window stage: LLM spans and evaluations -> per-series event-time minute buckets, their
rollups and views, and the metrics of DESIGN.md computed from them.

Modules, in data-flow order: `series` (keys, shards), `partial` (per-batch pre-aggregation),
`bucket` (the mergeable aggregate; with `sketch`, `bounded`, `evals`, and `bucket_state` for
its plain-data form), `sessions`, `watermark` (event-time progress, lateness), `ring` and
`windows` (one series: close, roll up, view), `shard` (all series of one shard), `catalog`
(metric names -> values). Pure Python: no Bytewax, Kafka or clock reads; every time is an
argument.
"""
