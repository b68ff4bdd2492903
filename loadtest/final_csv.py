"""Complete Locust CSVs at the end of a run.

Locust's --csv writer rewrites `<prefix>_stats.csv`, `_failures.csv` and `_exceptions.csv` once a second and
not again at shutdown, so the files it leaves miss up to the last second of the run (a 5 s run loses a
fifth of its requests). The locustfile calls `write_final_csvs` when Locust quits: it writes the same
files, in Locust's own format (its `StatsCSV`), from the final statistics. Each file is replaced atomically;
Locust's writer still holds the old file open and closes it afterwards without touching the new one.
"""

from __future__ import annotations

import csv
from pathlib import Path

from abqa.core.io import atomic_file

CSV_SUFFIXES = ("stats", "failures", "exceptions")


def write_final_csvs(environment, prefix: str) -> list[Path]:
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    sections = {"stats": writer.requests_csv, "failures": writer.failures_csv, "exceptions": writer.exceptions_csv}
    written = []
    for suffix in CSV_SUFFIXES:
        path = Path(f"{prefix}_{suffix}.csv")
        with atomic_file(path, newline="") as handle:
            sections[suffix](csv.writer(handle))
        written.append(path)
    return written
