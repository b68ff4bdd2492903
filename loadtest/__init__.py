"""Stage 4, loadtest: concurrent A/B traffic against Triton with Locust, swept over concurrency.

locustfile.py      the plain locustfile (`locust -f loadtest/locustfile.py`): QAUser, custom arguments
traffic.py         arms, weights, mode, users and duration as options (pure)
pool.py            the request pool: SQuAD windows tokenised per arm with abqa.core.qa, saved as pool.npz
final_csv.py       Locust's CSVs completed from the final statistics when Locust quits
server_metrics.py  Triton's Prometheus counters and batch statistics, differenced per step (pure parsing)
results.py         Locust CSVs + server view -> LoadRows -> load.json, load.csv, the table (pure but the writers)
runner.py          `abqa loadtest`: one Locust subprocess per step with a hard timeout, files after every step
cli.py             `abqa loadtest`
"""
