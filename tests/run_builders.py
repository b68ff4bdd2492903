"""Run folders for tests, written through the run-folder contract (`abqa.core.run`) with defaults for the fields
a test does not care about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abqa.core.run import (DatasetInfo, EvalRecord, LoadDocument, LoadRow, MachineInfo, PoolDataset, RunFolder,
                           RunMeta, RunStatus, ServerInfo, StepRecord, write_eval_records)

WHEN = "2026-01-01T00:00:00+00:00"
MACHINE = MachineInfo(cpu_model="Test CPU", cores=2, platform="test", python="3.11")


def dataset(**fields: Any) -> DatasetInfo:
    return DatasetInfo(**{"source": "path", "path": "dev.json", "sha256": "0" * 64, "version": "1.1",
                          "questions": 10570, "evaluated_questions": 10570, **fields})


def meta(name: str, arms: dict[str, dict], **fields: Any) -> RunMeta:
    """A complete meta.json; `arms` as {arm: ArmInfo fields}."""
    values: dict[str, Any] = {
        "name": name, "created_at": WHEN, "updated_at": WHEN, "dataset": dataset(), "order": "random", "seed": 0,
        "arms": arms, "server": ServerInfo(kind="abqa-serve", peak_rss_mb=1834.5), "client": {"peak_rss_mb": 210.0},
        "versions": {"abqa": "test"}, "machine": MACHINE, "status": RunStatus.COMPLETE, "records": 0,
    }
    values.update(fields)
    return RunMeta.model_validate(values)


def pool_dataset(arms: list[str]) -> PoolDataset:
    return PoolDataset(path="dev.json", source="path", version="1.1", sha256="0" * 64, questions=100, seed=0,
                       pool_size=64, pool_questions=40, padded_lengths={arm: {"192": 64} for arm in arms},
                       inputs={arm: ["input_ids", "attention_mask"] for arm in arms},
                       inputs_from={arm: "triton" for arm in arms})


def load_document(rows: list[LoadRow], **fields: Any) -> LoadDocument:
    arms = list(dict.fromkeys(row.arm for row in rows))
    users = sorted({row.users for row in rows if row.users is not None})
    header: dict[str, Any] = {
        "arms": arms, "users": users, "duration_s": 10.0, "mode": "split", "weights": {arm: 1.0 for arm in arms},
        "url": "http://127.0.0.1:8000", "protocol": "http", "metrics_url": None, "started_at": WHEN,
        "finished_at": WHEN, "standin": {arm: False for arm in arms}, "dataset": pool_dataset(arms),
        "machine": MACHINE,
    }
    header.update(fields)
    by_step = {row.step: row for row in rows}
    steps = [StepRecord(name=row.step, users=row.users, locust_dir=f"locust/{row.step}", exit_code=0)
             for row in by_step.values()]
    return LoadDocument.build(header, rows, steps)


def write_run(run_dir: Path, records: list[EvalRecord] | None = None, arms_meta: dict | None = None,
              load_rows: list[LoadRow] | None = None, **meta_fields: Any) -> Path:
    """eval.jsonl from `records`, meta.json when `arms_meta` is given, load.json from `load_rows`."""
    folder = RunFolder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if records is not None:
        write_eval_records(folder.eval, records)
    if arms_meta is not None:
        if records and "dataset" not in meta_fields:  # a complete run: it evaluated the questions it has records of
            meta_fields["dataset"] = dataset(evaluated_questions=len({record.id for record in records}))
        meta(run_dir.name, arms_meta, records=len(records or []), **meta_fields).write(folder.meta)
    if load_rows is not None:
        load_document(load_rows).write(folder.load)
    return run_dir
