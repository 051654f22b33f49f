"""Real services on loopback for the cluster tests: a PostgreSQL server and a single-node SLURM cluster.

Each lives in a throwaway directory, listens on free ports of 127.0.0.1 only, and is stopped at the end. Where the
server binaries (Debian's ``postgresql``, ``slurm-wlm``, ``slurmdbd``, ``munge``, ``mariadb-server``) are not
installed, the test is skipped with the install command as its reason; ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_PACKAGES = "apt-get install postgresql"
SLURM_PACKAGES = "apt-get install slurm-wlm slurmdbd munge mariadb-server"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # where Slurm's clients look for munged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout_s: float = 60.0, every_s: float = 0.5):
    """Poll ``check()`` until it returns something truthy; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def _scratch(owner: str | None) -> Iterator[Path]:
    """A directory under the system temp folder that ``owner`` (a system user) may use; removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="recrepro-service-"))
    try:
        if owner:
            shutil.chown(path, owner, owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    pytest.skip(f"PostgreSQL server binaries not installed ({POSTGRES_PACKAGES})")


@contextlib.contextmanager
def postgres_server(user: str, password: str, database: str) -> Iterator[str]:
    """A PostgreSQL server with password authentication; yields its URL, which holds no password."""
    bindir = _postgres_bindir()
    as_root = os.geteuid() == 0  # the server refuses to run as root: run it as Debian's postgres user
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    with _scratch("postgres" if as_root else None) as home:
        (home / "pw").write_text(password)
        if as_root:
            shutil.chown(home / "pw", "postgres", "postgres")
        data, port = home / "data", free_port()
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={home / 'pw'}",
              "--auth=scram-sha-256", "--no-sync"])  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home}"
        _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-o", options, "-w",
              "start"])  # fmt: skip
        try:
            env = {**os.environ, "PGPASSWORD": password}
            _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database], env=env)
            yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- SLURM


def _require(*names: str) -> None:
    missing = [n for n in names if not shutil.which(n)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed ({SLURM_PACKAGES})")


def _munge_works(env: dict[str, str]) -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True, env=env)
    if encode.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0


@contextlib.contextmanager
def _munged(home: Path) -> Iterator[None]:
    """munged on the socket Slurm's clients use: the machine's own if one runs, else a throwaway one."""
    if MUNGE_SOCKET.exists() and _munge_works(dict(os.environ)):
        yield
        return
    key = home / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    pid = home / "munged.pid"
    _run(["munged", f"--key-file={key}", f"--pid-file={pid}", f"--log-file={home / 'munged.log'}",
          f"--seed-file={home / 'munged.seed'}", "--force"])  # fmt: skip
    try:
        wait_for(lambda: _munge_works(dict(os.environ)), "munged")
        yield
    finally:
        _stop(pid)


def _stop(pid_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)


@contextlib.contextmanager
def _mariadb(home: Path) -> Iterator[int]:
    """A MariaDB server for slurmdbd's accounting; yields its port."""
    data, port = home / "mariadb", free_port()
    _run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
          "--auth-root-authentication-method=normal", "--skip-test-db"])  # fmt: skip
    sock = home / "mariadb.sock"
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve", f"--log-error={home / 'mariadb.err'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        sql = (
            "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1';"
            " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        wait_for(
            lambda: subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e", "SELECT 1"],
                                   capture_output=True).returncode == 0,
            "MariaDB",
        )  # fmt: skip
        _run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e", sql])
        yield port
    finally:
        server.terminate()
        server.wait(timeout=60)


SLURM_CONF = """\
ClusterName=recrepro-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/slurmctld.log
SlurmdLogFile={home}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
JobAcctGatherType=jobacct_gather/none
AccountingStoreFlags=job_comment
MpiDefault=none
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
DbdHost=localhost
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StorageLoc=slurm_acct_db
PidFile={home}/slurmdbd.pid
LogFile={home}/slurmdbd.log
"""


@contextlib.contextmanager
def slurm_cluster(account: str = "recrepro") -> Iterator[dict[str, str]]:
    """A one-node SLURM cluster (slurmctld, slurmd, and slurmdbd with MariaDB, so that ``sacct`` works) with one
    partition ``debug`` and one account; yields the environment its clients need (``SLURM_CONF``)."""
    _require("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sacctmgr", "munged", "mariadbd")
    if os.geteuid() != 0:
        pytest.skip("a SLURM node daemon (slurmd) needs root")
    with _scratch(None) as home, _munged(home), _mariadb(home) as db_port:
        for sub in ("state", "spool"):
            (home / sub).mkdir()
        memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        values = {
            "home": home,
            "host": socket.gethostname().split(".")[0],
            "ctld_port": free_port(),
            "slurmd_port": free_port(),
            "dbd_port": free_port(),
            "db_port": db_port,
            "cpus": 4 * os.cpu_count(),  # oversubscribed: jobs wait on the scheduler's polling more than on CPUs
            "memory_mb": memory_mb,
        }
        (home / "slurm.conf").write_text(SLURM_CONF.format(**values))
        (home / "slurmdbd.conf").write_text(SLURMDBD_CONF.format(**values))
        (home / "slurmdbd.conf").chmod(0o600)
        env = {**os.environ, "SLURM_CONF": str(home / "slurm.conf")}
        try:
            _run(["slurmdbd"], env=env)
            wait_for(lambda: _run_ok(["sacctmgr", "-n", "list", "cluster"], env), "slurmdbd")
            _run(["sacctmgr", "-i", "add", "cluster", "recrepro-test"], env=env)
            _run(["sacctmgr", "-i", "add", "account", account, "Cluster=recrepro-test"], env=env)
            _run(["sacctmgr", "-i", "add", "user", _user(), f"Account={account}",
                  "Cluster=recrepro-test"], env=env)  # fmt: skip
            _run(["slurmctld"], env=env)
            _run(["slurmd"], env=env)
            wait_for(lambda: "idle" in _run(["sinfo", "-h", "-o", "%T"], env=env).stdout, "the node to be idle")
            yield env
        finally:
            subprocess.run(["scancel", "--full", "-u", _user()], env=env, capture_output=True)
            for daemon in ("slurmd", "slurmctld", "slurmdbd"):
                _stop(home / f"{daemon}.pid")


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _run_ok(cmd: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(cmd, capture_output=True, env=env).returncode == 0
