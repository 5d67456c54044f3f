"""import runs know their process: a run whose process died is `interrupted`, not `running`

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

`import_run` gains `pid` and `host` (the process that runs the import) and the status
`interrupted`: a run left `running` by a process that died (kill -9, a crash, a lost machine)
is found and marked so when runs are listed or shown and when an import starts
(bastion.store.runs). On SQLite the CHECK constraint changes by rebuilding the table (same
rows); on PostgreSQL in place. Downgrade: the pid and host of every run are lost and an
interrupted run becomes `failed` (lossy when there are runs).
"""
from alembic import op

from bastion.store import migrate

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHECK = "ck_import_run_status_domain"
OLD = ("running", "succeeded", "partial", "failed")
NEW = (*OLD, "interrupted")


def _domain(states) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def _sqlite_rebuild(bind, states, process_columns: bool) -> None:
    """The table again with the status domain `states` (and pid, host or not), same rows."""
    extra = "pid INTEGER, host VARCHAR(255), " if process_columns else ""
    common = ("tenant_id, id, source, actor, status, started_at, finished_at, correlation_id, "
              "options, files, counts, errors")
    bind.exec_driver_sql(f"""CREATE TABLE import_run_new (
        tenant_id INTEGER NOT NULL, id INTEGER NOT NULL, source VARCHAR(200) NOT NULL,
        actor VARCHAR(200) NOT NULL, status VARCHAR(16) NOT NULL, started_at DATETIME NOT NULL,
        finished_at DATETIME, correlation_id VARCHAR(64) NOT NULL, options JSON NOT NULL,
        files JSON NOT NULL, counts JSON NOT NULL, errors JSON NOT NULL, {extra}
        CONSTRAINT pk_import_run PRIMARY KEY (tenant_id, id),
        CONSTRAINT {CHECK} CHECK ({_domain(states)}),
        CONSTRAINT fk_import_run_tenant_id_tenant FOREIGN KEY(tenant_id) REFERENCES tenant (id)
            ON DELETE CASCADE) WITHOUT ROWID""")
    status = "status" if "interrupted" in states else \
        "CASE status WHEN 'interrupted' THEN 'failed' ELSE status END"
    bind.exec_driver_sql(f"INSERT INTO import_run_new ({common}) SELECT "
                         f"{common.replace('status,', status + ',', 1)} FROM import_run")
    bind.exec_driver_sql("DROP TABLE import_run")
    bind.exec_driver_sql("ALTER TABLE import_run_new RENAME TO import_run")


def _pg_domain(states) -> None:
    op.execute(f"ALTER TABLE import_run DROP CONSTRAINT {CHECK}")
    op.execute(f"ALTER TABLE import_run ADD CONSTRAINT {CHECK} CHECK ({_domain(states)})")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(op.get_bind(), NEW, process_columns=True)
        return
    op.execute("ALTER TABLE import_run ADD COLUMN pid INTEGER, ADD COLUMN host VARCHAR(255)")
    _pg_domain(NEW)


def lost_on_downgrade(bind):
    """The process (pid, host) of every run; interrupted runs become failed."""
    return [*migrate.values_of(bind, "import_run", ("pid", "host")),
            ("import_run.status", migrate.count(
                bind, "SELECT count(*) FROM import_run WHERE status = 'interrupted'"),
             "values", "interrupted runs become failed")]


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild(op.get_bind(), OLD, process_columns=False)
        return
    op.execute("UPDATE import_run SET status = 'failed' WHERE status = 'interrupted'")
    _pg_domain(OLD)
    op.execute("ALTER TABLE import_run DROP COLUMN pid, DROP COLUMN host")
