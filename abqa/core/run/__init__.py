"""The run folder as a typed, versioned contract between the stages (see `folder.py` for the files).

Every producer builds these models and calls `write()`; every consumer calls `read()`. Nothing else parses a run
folder's files.
"""

from abqa.core.run.document import SCHEMA_VERSION, Document, Record, describe_validation_error, validate
from abqa.core.run.eval import EvalRecord, EvalStatus, RoutedInfo, read_eval_records, write_eval_records
from abqa.core.run.folder import (EVAL_FILENAME, LOAD_CSV_FILENAME, LOAD_JSON_FILENAME, LOCUST_DIRNAME,
                                  META_FILENAME, PLOTS_DIRNAME, POOL_FILENAME, REPORT_HTML, REPORT_JSON, REPORT_MD,
                                  REQUESTS_FILENAME, RUN_FILES, RunFolder)
from abqa.core.run.load import (LatencyPercentiles, LoadDocument, LoadRow, LoadTotals, PoolDataset, RequestRecord,
                                ServerStepView, StepRecord, read_request_records)
from abqa.core.run.meta import (ArmInfo, ArmKind, ArmSummary, ClientInfo, DatasetInfo, LanguagePart,
                                LatencyConditions, MachineInfo, QaSettings, RouterInfo, RouterRecordCounts, RunKind, RunMeta, RunStatus, ServerInfo,
                                SquadV2Settings, TritonModel)
from abqa.core.run.report import ArmReport, LoadStepReport, PairTest, Provenance, ReportData

__all__ = [
    "SCHEMA_VERSION", "Document", "Record", "describe_validation_error", "validate",
    "EvalRecord", "EvalStatus", "RoutedInfo", "read_eval_records", "write_eval_records",
    "EVAL_FILENAME", "LOAD_CSV_FILENAME", "LOAD_JSON_FILENAME", "LOCUST_DIRNAME", "META_FILENAME", "PLOTS_DIRNAME",
    "POOL_FILENAME", "REPORT_HTML", "REPORT_JSON", "REPORT_MD", "REQUESTS_FILENAME", "RUN_FILES", "RunFolder",
    "LatencyPercentiles", "LoadDocument", "LoadRow", "LoadTotals", "PoolDataset", "RequestRecord", "ServerStepView",
    "StepRecord", "read_request_records",
    "ArmInfo", "ArmKind", "ArmSummary", "ClientInfo", "DatasetInfo", "LanguagePart", "LatencyConditions",
    "MachineInfo", "QaSettings",
    "RouterInfo", "RouterRecordCounts", "RunKind", "RunMeta", "RunStatus", "ServerInfo", "SquadV2Settings",
    "TritonModel",
    "ArmReport", "LoadStepReport", "PairTest", "Provenance", "ReportData",
]
