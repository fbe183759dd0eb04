"""The throwaway cluster the PostgreSQL tests run on (jobqueue.lab.pgcluster)."""

from __future__ import annotations

from jobqueue.lab.pgcluster import PgCluster


def test_cluster_answers_on_its_unix_socket_only(pg_cluster: PgCluster) -> None:
    import psycopg  # after the fixture: it skips (or fails under CI) without psycopg

    with psycopg.connect(pg_cluster.url) as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
        assert row == ("",)  # no TCP listener
        row = conn.execute("SHOW unix_socket_directories").fetchone()
        assert row == (str(pg_cluster.dir),)
