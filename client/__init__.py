"""Stage 3, `abqa evaluate`: paired SQuAD evaluation through Triton's KServe v2 API, with replayed prediction files
as arms.

arms.py     served arms (windows -> Triton -> best span, timed) and replayed prediction files, each -> EvalRecord
runner.py   the run: order modes, resume, signals, append-and-fsync records, meta.json
resources.py which process serves the endpoint; peak resident memory of client and server
summary.py  per-arm EM/F1/latency table
cli.py      `abqa evaluate`
"""
