"""The files of a run folder, by name, in one place.

    runs/<name>/
      meta.json       RunMeta          abqa evaluate, router export
      eval.jsonl      EvalRecord/line  abqa evaluate, router export
      load.json       LoadDocument     abqa loadtest
      load.csv        (LoadRow, flat)  abqa loadtest
      requests.jsonl  RequestRecord    abqa loadtest
      pool.npz        request pool     abqa loadtest
      locust/<step>/  Locust's CSVs, HTML report and log (users-4, rate-8, slo-<arm>-rate-6.5)
      report.json     ReportData       abqa report
      report.html, report.md, plots/*.png
      .abqa.lock      the writer's lock (see lock.py): who writes the folder now, or wrote it last
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

from abqa.core.run.eval import EvalRecord, read_eval_records
from abqa.core.run.load import LoadDocument, RequestRecord, read_request_records
from abqa.core.run.lock import LOCK_FILENAME, LockHolder, lock_run_folder
from abqa.core.run.meta import RunMeta
from abqa.core.run.report import ReportData

EVAL_FILENAME = "eval.jsonl"
META_FILENAME = RunMeta.FILENAME
LOAD_JSON_FILENAME = LoadDocument.FILENAME
LOAD_CSV_FILENAME = "load.csv"
REQUESTS_FILENAME = "requests.jsonl"
POOL_FILENAME = "pool.npz"
LOCUST_DIRNAME = "locust"
REPORT_JSON = ReportData.FILENAME
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS_DIRNAME = "plots"
# The files whose presence makes a folder a run folder (what `abqa report` can read).
RUN_FILES = (EVAL_FILENAME, META_FILENAME, LOAD_JSON_FILENAME)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def meta(self) -> Path:
        return self.path / META_FILENAME

    @property
    def eval(self) -> Path:
        return self.path / EVAL_FILENAME

    @property
    def load(self) -> Path:
        return self.path / LOAD_JSON_FILENAME

    @property
    def load_csv(self) -> Path:
        return self.path / LOAD_CSV_FILENAME

    @property
    def requests(self) -> Path:
        return self.path / REQUESTS_FILENAME

    @property
    def pool(self) -> Path:
        return self.path / POOL_FILENAME

    @property
    def locust(self) -> Path:
        return self.path / LOCUST_DIRNAME

    @property
    def report_json(self) -> Path:
        return self.path / REPORT_JSON

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def report_md(self) -> Path:
        return self.path / REPORT_MD

    @property
    def plots(self) -> Path:
        return self.path / PLOTS_DIRNAME

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILENAME

    def lock(self, command: str) -> ContextManager[LockHolder]:
        """Hold the folder's writer lock for a `with` block (creates the folder); RunFolderBusy when another
        process writes it. `command` (e.g. "abqa evaluate") names this writer to a refused one."""
        return lock_run_folder(self.path, command)

    def is_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def read_meta(self) -> RunMeta | None:
        return RunMeta.read_if_exists(self.meta)

    def read_eval(self) -> list[EvalRecord]:
        return read_eval_records(self.eval)

    def read_load(self) -> LoadDocument | None:
        return LoadDocument.read_if_exists(self.load)

    def read_requests(self) -> list[RequestRecord]:
        return read_request_records(self.requests)

    def read_report(self) -> ReportData | None:
        return ReportData.read_if_exists(self.report_json)
