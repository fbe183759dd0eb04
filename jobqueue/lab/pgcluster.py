"""A throwaway PostgreSQL cluster, for the tests and the benchmark.

``PgCluster()`` runs ``initdb`` in a fresh temporary directory and starts a
server that listens only on a Unix socket in that directory (no TCP listener,
so nothing outside this machine can reach it, and two clusters never fight
over a port: the port number only names the socket file).  It is stdlib only,
so ``jobqueue.lab`` imports it without the ``postgres`` extra.

``initdb`` refuses to run as root, and CI runs as root: there the server
commands run as the ``postgres`` user (``runuser -u postgres``, a user
Debian's package creates), and the directory is handed to that user.

    with PgCluster() as cluster:
        JobQueue(Config(postgres_url=cluster.url, ...))
        cluster.crash()     # pg_ctl stop -m immediate: as a power cut looks to the server
        cluster.start()     # crash recovery replays the WAL
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from types import TracebackType

__all__ = ["PgCluster", "PgUnavailable", "find_bindir"]

_RUN_AS = "postgres"  # the unprivileged user that runs the server when we are root


class PgUnavailable(RuntimeError):
    """PostgreSQL's server binaries cannot be found, or cannot run here."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; ``PgUnavailable`` if there is none.

    PATH first, then ``pg_config --bindir`` (Debian keeps the server binaries
    in /usr/lib/postgresql/<version>/bin, off PATH).
    """
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            raise PgUnavailable(f"pg_config --bindir failed: {exc}") from exc
        bindir = Path(out)
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise PgUnavailable(
        "PostgreSQL server binaries not found: no initdb/pg_ctl on PATH, and no pg_config "
        "that points at them (Debian: apt-get install postgresql)"
    )


def _free_port() -> int:
    # Only names the socket file (.s.PGSQL.<port>): with no TCP listener any
    # number works; a free one keeps logs unambiguous.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One initdb'd PostgreSQL cluster in a temporary directory, started on creation.

    ``settings`` are extra ``postgresql.conf`` lines (name -> value), for
    example ``{"max_connections": "200"}``; everything else stays at the
    server's defaults (``fsync`` and ``synchronous_commit`` on).
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bindir = find_bindir()
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="jq-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.port = _free_port()
        self.running = False
        try:
            if self._as_root:
                shutil.chown(self.dir, _RUN_AS, _RUN_AS)
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            conf = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{self.dir}'",
                "port": str(self.port),
                **(settings or {}),
            }
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as f:
                f.write("\n# jobqueue.lab.pgcluster\n")
                f.writelines(f"{name} = {value}\n" for name, value in conf.items())
            self.start()
        except BaseException:
            self.remove()
            raise

    @property
    def url(self) -> str:
        """A libpq URI for the ``postgres`` database, over the Unix socket."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """A libpq URI for ``dbname`` on this cluster."""
        host = urllib.parse.quote(str(self.dir), safe="")
        return f"postgresql://postgres@/{dbname}?host={host}&port={self.port}"

    def start(self) -> None:
        """Start the server (after ``stop()`` or ``crash()``: crash recovery runs here)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "start")
        self.running = True

    def stop(self) -> None:
        """A clean shutdown (``-m fast``: sessions are cut, then a checkpoint)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def crash(self) -> None:
        """Stop at once, without a checkpoint (``-m immediate``): recovery replays the WAL."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False

    def restart(self) -> None:
        """``crash()`` and ``start()``: what a power cut and a reboot look like to clients."""
        self.crash()
        self.start()

    def remove(self) -> None:
        """Stop the server if it runs, and delete the directory.  Idempotent."""
        try:
            if self.running:
                self.crash()  # nothing in a throwaway cluster is worth a checkpoint
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.logfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._as_root:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PgUnavailable(f"running as root, {program} needs runuser, not found")
            command = [runuser, "-u", _RUN_AS, "--", *command]
        try:
            done = subprocess.run(
                command, check=False, capture_output=True, text=True, timeout=120, cwd=self.dir
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PgUnavailable(f"{program} could not run: {exc}") from exc
        if done.returncode != 0:
            raise PgUnavailable(
                f"{program} failed with exit code {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\n{self.log_tail()}"
            )
