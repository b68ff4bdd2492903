"""The router's request log on a real PostgreSQL server (Debian's packages), started on loopback for the test.

Skipped, with the reason, where PostgreSQL's server binaries (initdb, pg_ctl) or the psycopg driver are missing:
`apt-get install -y postgresql` installs them. As root, the cluster runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from abqa.serve.process import free_ports


def _postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (Debian's layout)."""
    candidates = []
    for folder in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(folder).parent.name
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file() and version.split(".")[0].isdigit():
            candidates.append((int(version.split(".")[0]), Path(folder)))
    return max(candidates)[1] if candidates else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster in a temporary folder on 127.0.0.1:<free port>; stopped and removed after."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'psycopg[binary]')")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                    "(apt-get install -y postgresql)")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:   # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without `runuser` to start the server as `postgres`")
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="abqa-pg-"))   # not pytest's tmp_path: `postgres` must be able to enter it
    data = root / "data"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    (port,) = free_ports(1)
    log_file = root / "server.log"
    try:
        subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "abqa", "-A", "trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-w", "-t", "60",
                        "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log_text = log_file.read_text() if log_file.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\n{getattr(exc, 'stderr', b'')!r}\n{log_text}")
    try:
        yield f"postgresql+psycopg://abqa@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_request_log_on_postgresql(postgres_url, tmp_path):
    """Sticky and shadow traffic logged to PostgreSQL, read back by the summary endpoint and the exporter."""
    import sqlalchemy as sa

    from abqa.router.app import create_app
    from abqa.router.export import export_log
    from abqa.router.policy import RoutingPolicy
    from abqa.router.requestlog import RequestLog, make_engine, read_entries
    from test_router import CONTEXT, QUESTION, FakeBackend   # tests/ is on sys.path (pytest's rootdir conftest)

    policy = RoutingPolicy.build("pg-sticky", "sticky", ["distilbert", "bert"], [1, 1])
    app = create_app(policy, FakeBackend(), RequestLog(postgres_url))
    users = [f"user-{i}" for i in range(30)]
    with TestClient(app) as client:
        arms = {user: {client.post("/v1/answer", json={"question": QUESTION, "context": CONTEXT, "user_id": user})
                       .json()["arm"] for _ in range(2)} for user in users}
        summary = client.get("/v1/experiments/pg-sticky/summary").json()
    assert all(len(seen) == 1 for seen in arms.values())
    assert summary["requests"] == 60 and summary["routed"] == 60

    engine = make_engine(postgres_url)
    assert engine.dialect.name == "postgresql"
    entries = list(read_entries(engine, "pg-sticky"))
    assert len(entries) == 60 and all(e.received_at.tzinfo is not None for e in entries)
    by_user: dict[str, set[str]] = {}
    for entry in entries:
        by_user.setdefault(entry.user_hash, set()).add(entry.arm)
    assert len(by_user) == 30 and all(len(seen) == 1 for seen in by_user.values())
    with engine.connect() as connection:
        sessions = connection.execute(sa.text("select count(*) from abqa_router_sessions")).scalar()
    engine.dispose()
    assert sessions == 1

    result = export_log(postgres_url, tmp_path / "run")
    assert result.experiment == "pg-sticky" and result.records == 60 and result.unscored == 60
