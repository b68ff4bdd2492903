"""Stage 4, loadtest: A/B traffic against Triton with Locust, swept over concurrency and request rate.

locustfile.py      the plain locustfile (`locust -f loadtest/locustfile.py`): QAUser (closed or open loop), custom
                   arguments, one record per request to requests.jsonl
traffic.py         arms, weights, mode, users and duration as options (pure)
schedule.py        open-loop arrivals: seeded Poisson or constant schedules, sent without waiting for answers
pool.py            the request pool: SQuAD windows tokenised per arm with abqa.core.qa, saved as pool.npz
steps.py           the sweep's steps and when each one ends: warm-up, windows, stability, maximum (pure)
figures.py         a step's figures from its request records: exact percentiles, rates, windows, generator (pure)
answers.py         answers decoded under load against eval.jsonl's (pure)
slo.py             --slo-ms: the search for each arm's highest rate within a p99 bound (pure)
final_csv.py       Locust's CSVs completed from the final statistics when Locust quits
server_metrics.py  Triton's Prometheus counters and batch statistics, differenced per step (pure parsing)
results.py         records + server view -> LoadRows -> load.json, load.csv, the table (pure but the writers)
runner.py          `abqa loadtest`: one Locust subprocess per step, followed until stable, files after every step
cli.py             `abqa loadtest`
"""
