"""The run folder as a typed, versioned contract between the stages (see `folder.py` for the files).

Every producer builds these models and calls `write()`; every consumer calls `read()`. Nothing else parses a run
folder's files.
"""

from abqa.core.run.document import SCHEMA_VERSION, Document, Record, describe_validation_error, validate
from abqa.core.run.eval import EvalRecord, EvalStatus, RoutedInfo, read_eval_records, write_eval_records
from abqa.core.run.folder import (EVAL_FILENAME, LOAD_CSV_FILENAME, LOAD_JSON_FILENAME, LOCUST_DIRNAME,
                                  META_FILENAME, PLOTS_DIRNAME, POOL_FILENAME, REPORT_HTML, REPORT_JSON, REPORT_MD,
                                  REQUESTS_FILENAME, RUN_FILES, RunFolder)
from abqa.core.run.lock import (LOCK_FILENAME, LockHolder, RunFolderBusy, RunFolderUnwritable, cannot_write,
                                lock_run_folder)
from abqa.core.run.load import (LATENCY_KEYS, AnswerCheck, GeneratorView, LatencyPercentiles, LoadDocument, LoadRow,
                                LoadTotals, PoolDataset, RequestLog, RequestLogTail, RequestRecord, ServerStepView,
                                SloResult, StepRecord, WindowArm, read_request_records)
from abqa.core.run.meta import (ArmInfo, ArmKind, ArmSummary, ClientInfo, DatasetInfo, DecisionPlan, LanguagePart,
                                LatencyConditions, MachineInfo, QaSettings, RouterInfo, RouterRecordCounts, RunKind,
                                RunMeta, RunStatus, ServerInfo, SquadV2Settings, TritonModel)
from abqa.core.run.report import (ArmReport, Equivalence, LoadStepReport, NonInferiority, PairTest, Provenance,
                                  ReportData)

__all__ = [
    "SCHEMA_VERSION", "Document", "Record", "describe_validation_error", "validate",
    "EvalRecord", "EvalStatus", "RoutedInfo", "read_eval_records", "write_eval_records",
    "EVAL_FILENAME", "LOAD_CSV_FILENAME", "LOAD_JSON_FILENAME", "LOCUST_DIRNAME", "META_FILENAME", "PLOTS_DIRNAME",
    "POOL_FILENAME", "REPORT_HTML", "REPORT_JSON", "REPORT_MD", "REQUESTS_FILENAME", "RUN_FILES", "RunFolder",
    "LOCK_FILENAME", "LockHolder", "RunFolderBusy", "RunFolderUnwritable", "cannot_write", "lock_run_folder",
    "LATENCY_KEYS", "AnswerCheck", "GeneratorView", "LatencyPercentiles", "LoadDocument", "LoadRow", "LoadTotals",
    "PoolDataset", "RequestLog", "RequestLogTail", "RequestRecord", "ServerStepView", "SloResult", "StepRecord",
    "WindowArm", "read_request_records",
    "ArmInfo", "ArmKind", "ArmSummary", "ClientInfo", "DatasetInfo", "DecisionPlan", "LanguagePart", "LatencyConditions",
    "MachineInfo", "QaSettings",
    "RouterInfo", "RouterRecordCounts", "RunKind", "RunMeta", "RunStatus", "ServerInfo", "SquadV2Settings",
    "TritonModel",
    "ArmReport", "Equivalence", "LoadStepReport", "NonInferiority", "PairTest", "Provenance", "ReportData",
]
