"""A production-shaped environment on one machine, each server in its own process group, stopped by its id:

- PostgreSQL 15 (Debian's binaries): MLflow's backend store, password authentication over TCP;
- ``moto_server``: the object store (S3 API), with one bucket per role (:data:`BUCKETS`);
- ``mlflow server`` on that PostgreSQL with basic auth and proxied artifacts (``--serve-artifacts``) in S3;
- a two-node Ray cluster with token authentication: ``ray start --head`` and a worker node
  (``ray start --address``) carrying the custom resource :data:`WORKER_RESOURCE`, each with its own temp dir.

``production_environment(root)`` starts them and yields a :class:`ProductionEnv` with every address,
credential and environment a test needs; leaving the ``with`` block stops them all, also after a failure.
The Ray nodes hold the cluster's secrets as a KubeRay pod would (object-store keys, MLflow credentials, the
Ray token) and nothing of the test process's ``AEPIPE_*``, ``MLFLOW_*``, ``RAY_*``, ``AWS_*`` or ``PYTHONPATH``:
a job's code comes from its own working dir, so a relative ``AEPIPE_HOME`` (the default ``./.aepipe``) is
per job.

PostgreSQL, moto and MLflow listen on 127.0.0.1 only. Ray cannot be held to loopback: ``ray start`` replaces
``--node-ip-address=127.0.0.1`` by the machine's address, and its GCS, raylets and agents listen on all
interfaces or on that address (token auth guards them; the dashboard and the Jobs API are on 127.0.0.1).

``python -m tests.support.production`` starts it, prints the client environment and waits for Ctrl-C.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.services import BIN, as_user, free_port, start, stop, sweep, wait_for, wait_http

#: The S3 buckets the environment creates, by role.
BUCKETS = {"data": "data", "checkpoints": "checkpoints", "scores": "scores", "mlflow": "mlflow-artifacts"}
#: A custom resource only the Ray worker node has: ``.options(resources={WORKER_RESOURCE: 0.01})`` pins there.
WORKER_RESOURCE = "worker_node"
#: The servers the others use: started first, stopped last.
STORES = ("postgres", "s3")
#: Variables of the test process that never reach the servers or the clients this module builds.
PRIVATE_PREFIXES = ("RAY_", "MLFLOW_", "AEPIPE_", "AWS_")
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) not found: install them with `apt-get install postgresql` "
    "(Debian/Ubuntu; or run `make postgres`), or set AEPIPE_PG_BIN to the directory holding them"
)


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL cluster on ``host:port`` (password auth over TCP; its unix socket in ``socket_dir``)."""

    host: str
    port: int
    user: str
    password: str
    database: str
    socket_dir: Path

    @property
    def uri(self) -> str:
        """SQLAlchemy URI of :attr:`database`, as given to ``mlflow server``: the driver is named, since SQLAlchemy
        2.1 defaults to psycopg 3, which is not installed."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def connect(self, database: str | None = None) -> Any:
        """A psycopg2 connection to ``database`` (default: MLflow's); close it (or use it in ``with closing``)."""
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database or self.database
        )


@dataclass(frozen=True)
class S3:
    """The S3 endpoint (moto) and its dummy credentials; :data:`BUCKETS` exist."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    buckets: dict[str, str] = field(default_factory=lambda: dict(BUCKETS))

    def url(self, role: str, *parts: str) -> str:
        """``s3://BUCKET/PART/...`` in the bucket of ``role`` (a key of :data:`BUCKETS`)."""
        return "/".join([f"s3://{self.buckets[role]}", *parts])

    def env(self) -> dict[str, str]:
        """What boto3, pyarrow's S3FileSystem and MLflow's S3 artifact repository read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint (independent of the process's environment)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def keys(self, role: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in the bucket of ``role``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.buckets[role], Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@dataclass(frozen=True)
class MLflowServer:
    """``mlflow server`` with basic auth. As ``infra/README.md`` sets it up, the jobs and their users log in as
    :attr:`username` (``aepipe-jobs``, an admin because jobs create experiments and registered models); the
    ``admin`` account is for administration only."""

    uri: str
    username: str
    password: str
    admin_username: str
    admin_password: str
    artifacts_destination: str

    def env(self) -> dict[str, str]:
        """The MLflow variables of a user's shell (and, without the URI, of a Ray node)."""
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }


@dataclass(frozen=True)
class RayCluster:
    """Two Ray nodes with token auth: the Jobs API at :attr:`dashboard_url`, the GCS at :attr:`gcs_address`."""

    dashboard_url: str
    gcs_address: str
    token: str
    worker_resource: str = WORKER_RESOURCE

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def env(self) -> dict[str, str]:
        """What ``aepipe submit`` / ``aepipe jobs`` read: the Jobs API address (the default of ``--address``)
        and the token."""
        return {"RAY_API_SERVER_ADDRESS": self.dashboard_url, "RAY_AUTH_TOKEN": self.token}

    def jobs_client(self) -> Any:
        """A ``JobSubmissionClient`` with the token."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.headers())

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes as the state API lists them (``state``, ``resources_total``, ``is_head_node``...)."""
        req = urllib.request.Request(f"{self.dashboard_url}/api/v0/nodes?limit=100&detail=true", headers=self.headers())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["data"]["result"]["result"]

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes() if n["state"] == "ALIVE"]

    def has_nodes(self, n: int) -> bool:
        """Whether ``n`` nodes are alive (False while the state API does not answer yet)."""
        try:
            return len(self.alive_nodes()) == n
        except (OSError, KeyError, ValueError):
            return False


@dataclass(frozen=True)
class ProductionEnv:
    """Everything a test needs to reach the environment; the processes stop when the fixture ends."""

    root: Path
    postgres: Postgres
    s3: S3
    mlflow: MLflowServer
    ray: RayCluster
    #: Each server's log: postgres, s3, mlflow, ray-head, ray-worker.
    logs: dict[str, Path]
    #: Seconds from the first process started to the environment ready.
    startup_s: float
    #: Seconds each server took to stop (by the names of :attr:`logs`), filled when the environment stops.
    stop_s: dict[str, float] = field(default_factory=dict)

    def client_env(self, home: Path | str | None = None, **extra: str) -> dict[str, str]:
        """The environment of a user's shell pointed at this environment, for ``aepipe`` subprocesses: the test
        process's environment (``PYTHONPATH`` included: the code under test) without its ``AEPIPE_*``,
        ``MLFLOW_*``, ``RAY_*`` and ``AWS_*``, plus the MLflow URI and credentials, the S3 endpoint and keys,
        the Ray Jobs API address (``--address``'s default) and token; ``AEPIPE_HOME=home`` when given, and
        ``extra`` last."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
        env.update(PATH=f"{BIN}:{os.environ['PATH']}", **self.s3.env(), **self.mlflow.env(), **self.ray.env())
        if home is not None:
            env["AEPIPE_HOME"] = str(home)
        return {**env, **extra}

    def node_env(self) -> dict[str, str]:
        """What each Ray node's processes have (and so every job): the cluster's secrets, no AEPIPE_HOME."""
        return node_env(self.s3, self.mlflow, self.ray.token)


def node_env(s3: S3, mlflow: MLflowServer, token: str) -> dict[str, str]:
    # no PYTHONPATH either: as on a real cluster, a job's code comes with its working_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith((*PRIVATE_PREFIXES, "PYTHONPATH"))}
    return {
        **env,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        # SIGTERM stops a node at once; by default it first drains for up to 30 s (for Serve replicas)
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        **s3.env(),
        "MLFLOW_TRACKING_USERNAME": mlflow.username,
        "MLFLOW_TRACKING_PASSWORD": mlflow.password,
    }


class Processes:
    """The servers started so far; :meth:`stop_all` stops them side by side (Ray's nodes take seconds each)."""

    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen, signal.Signals]] = {}
        self.markers: list[str] = []
        #: Seconds each server took to stop, filled by :meth:`stop_all`.
        self.stop_s: dict[str, float] = {}

    def add(
        self, name: str, proc: subprocess.Popen, first: signal.Signals = signal.SIGTERM, marker: str | None = None
    ) -> None:
        """Track ``proc`` (stopped with ``first``, then SIGKILL); ``marker``: a path only its processes name,
        swept afterwards (Ray starts some helpers in sessions of their own)."""
        self.procs[name] = (proc, first)
        if marker:
            self.markers.append(marker)

    def stop_all(self) -> None:
        """Ray and MLflow side by side, then what MLflow uses (PostgreSQL, S3), so that no client is left retrying
        a connection to a store that went away; then sweep the markers."""

        def stop_one(name: str) -> None:
            t0 = time.monotonic()
            stop(self.procs[name][0], 15.0, self.procs[name][1])
            self.stop_s[name] = round(time.monotonic() - t0, 1)

        stores = [n for n in self.procs if n in STORES]
        for wave in ([n for n in self.procs if n not in STORES], stores):
            if wave:
                with ThreadPoolExecutor(len(wave)) as pool:
                    list(pool.map(stop_one, wave))
        for marker in self.markers:
            sweep(marker)


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: ``AEPIPE_PG_BIN``, Debian's newest
    ``/usr/lib/postgresql/N/bin``, or ``PATH``."""
    candidates = [os.environ.get("AEPIPE_PG_BIN", "")]
    candidates += sorted(
        (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for c in filter(None, candidates):
        if (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    raise PostgresMissing(INSTALL_HINT)


def postgres_user() -> str | None:
    """Who runs PostgreSQL: None (this user) unless we are root, which initdb and postgres refuse; then the
    ``postgres`` system account (Debian's package creates it), else ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL")


def start_postgres(root: Path, procs: Processes) -> tuple[Postgres, subprocess.Popen]:
    """initdb a cluster under ``root/pg`` and start ``postgres`` on a free loopback port (not yet ready)."""
    bindir = postgres_bin()
    user = postgres_user()
    pg = root / "pg"
    pg.mkdir()
    password = secrets.token_urlsafe(18)
    (pg / "pwfile").write_text(password + "\n")
    if user:
        pw = pwd.getpwnam(user)
        for path in (pg, pg / "pwfile"):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    init = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(pg / "data"),
            "-U",
            "aepipe",
            f"--pwfile={pg / 'pwfile'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        check=False,
        **as_user(user),
    )
    if init.returncode:
        raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout[-2000:]}{init.stderr[-2000:]}")
    (pg / "pwfile").unlink()
    info = Postgres("127.0.0.1", free_port(), "aepipe", password, "mlflow", pg)
    cmd = [str(bindir / "postgres"), "-D", str(pg / "data"), "-h", info.host, "-p", str(info.port), "-k", str(pg)]
    # a throwaway cluster: no durability, so startup and MLflow's migrations stay quick
    cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = start(cmd, dict(os.environ), root / "postgres.log", user=user)
    procs.add("postgres", proc, signal.SIGINT)  # PostgreSQL's fast shutdown (SIGTERM waits for clients to leave)
    return info, proc


def create_database(info: Postgres, proc: subprocess.Popen, log: Path) -> None:
    import psycopg2

    def accepts() -> bool:
        try:
            psycopg2.connect(
                host=info.host, port=info.port, user=info.user, password=info.password, dbname="postgres"
            ).close()
            return True
        except psycopg2.OperationalError:
            return False

    wait_for(accepts, proc, log, f"postgres on {info.host}:{info.port}", timeout_s=60)
    conn = info.connect("postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {info.database}")
    finally:
        conn.close()


def start_s3(root: Path, procs: Processes) -> tuple[S3, subprocess.Popen]:
    port = free_port()
    s3 = S3(f"http://127.0.0.1:{port}", "aepipe-test-key", secrets.token_hex(16))
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    proc = start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], env, root / "s3.log")
    procs.add("s3", proc)
    return s3, proc


def create_buckets(s3: S3, proc: subprocess.Popen, log: Path) -> None:
    wait_http(f"{s3.endpoint}/moto-api/", proc, log, timeout_s=60)
    client = s3.client()
    for bucket in s3.buckets.values():
        client.create_bucket(Bucket=bucket)


def start_mlflow(root: Path, procs: Processes, pg: Postgres, s3: S3) -> tuple[MLflowServer, subprocess.Popen]:
    """``mlflow server`` on PostgreSQL, artifacts proxied to S3, basic auth as ``infra/mlflow/k8s/mlflow.yaml``
    runs it: the user store in SQLite apart from the backend store, the admin's password from the environment
    (``MLFLOW_AUTH_ADMIN_PASSWORD``, read on the first start only), never in the ini file. The jobs user is
    created once the server answers (:func:`create_jobs_user`)."""
    mlf = root / "mlflow"
    mlf.mkdir()
    password = secrets.token_urlsafe(18)
    ini = mlf / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{mlf / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    jobs_password = secrets.token_urlsafe(18)
    server = MLflowServer(f"http://127.0.0.1:{port}", "aepipe-jobs", jobs_password, "admin", password, s3.url("mlflow"))
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        pg.uri,
        "--serve-artifacts",
        "--artifacts-destination",
        server.artifacts_destination,
        "--app-name",
        "basic-auth",
        # on SIGTERM uvicorn otherwise waits for every client's keep-alive connection to close
        "--uvicorn-opts",
        "--timeout-graceful-shutdown 2",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    env.update(
        **s3.env(),
        MLFLOW_AUTH_CONFIG_PATH=str(ini),
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        # MLflow's own job runner (GenAI scorers, trace rollups: nothing aepipe uses) is 8 more Python processes
        # that import MLflow: on 2 cores it doubles the server's startup and delays its shutdown
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    proc = start(cmd, env, root / "mlflow.log")
    procs.add("mlflow", proc)
    return server, proc


def create_jobs_user(server: MLflowServer) -> None:
    """The ``aepipe-jobs`` user, made an admin, with the admin's credentials (infra/README.md's two requests)."""
    auth = base64.b64encode(f"{server.admin_username}:{server.admin_password}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    for method, path, body in (
        ("POST", "users/create", {"username": server.username, "password": server.password}),
        ("PATCH", "users/update-admin", {"username": server.username, "is_admin": True}),
    ):
        req = urllib.request.Request(
            f"{server.uri}/api/2.0/mlflow/{path}", json.dumps(body).encode(), headers, method=method
        )
        with urllib.request.urlopen(req, timeout=30):
            pass


def ray_node_cmd(temp: Path, num_cpus: int, extra: list[str]) -> list[str]:
    """``ray start --block`` with private ports and temp dir (two nodes share this machine)."""
    ports = ("dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")
    ports += ("node-manager", "object-manager")
    return [
        str(BIN / "ray"),
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--object-store-memory=300000000",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
        *(f"--{name}-port={free_port()}" for name in ports),
        *extra,
    ]


def start_ray_head(
    root: Path, procs: Processes, token: str, env: dict[str, str], num_cpus: int
) -> tuple[RayCluster, subprocess.Popen]:
    temp = root / "rh"  # Ray's socket paths live under the temp dir: keep it short
    dash, gcs = free_port(), free_port()
    extra = ["--head", f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    extra += [f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}"]
    proc = start(ray_node_cmd(temp, num_cpus, extra), env, root / "ray-head.log")
    procs.add("ray-head", proc, marker=str(temp))
    return RayCluster(f"http://127.0.0.1:{dash}", f"127.0.0.1:{gcs}", token), proc


def start_ray_worker(
    root: Path, procs: Processes, ray: RayCluster, env: dict[str, str], num_cpus: int
) -> subprocess.Popen:
    temp = root / "rw"
    extra = [f"--address={ray.gcs_address}", f"--resources={json.dumps({ray.worker_resource: 1})}"]
    proc = start(ray_node_cmd(temp, num_cpus, extra), env, root / "ray-worker.log")
    procs.add("ray-worker", proc, marker=str(temp))
    return proc


@contextlib.contextmanager
def production_environment(
    root: Path | None = None, head_cpus: int = 2, worker_cpus: int = 2, timeout_s: float = 240.0
) -> Iterator[ProductionEnv]:
    """Start the environment under ``root`` (a new short temp dir by default, removed afterwards), yield it,
    stop every process (also when startup or the body fails). PostgreSQL and moto take a second;
    MLflow (its migrations) and the Ray head then come up together, and the worker node joins the head."""
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="aepx-", dir="/tmp")) if root is None else root
    if postgres_user():
        root.chmod(0o755)  # PostgreSQL's account must reach root/pg
    logs = {name: root / f"{name}.log" for name in ("postgres", "s3", "mlflow", "ray-head", "ray-worker")}
    t0 = time.monotonic()
    procs = Processes()
    try:
        s3, s3_proc = start_s3(root, procs)  # moto imports for a second meanwhile initdb runs
        pg, pg_proc = start_postgres(root, procs)
        token = secrets.token_hex(16)
        # the Ray nodes' environment holds the MLflow jobs user's password: settle it before starting Ray
        create_buckets(s3, s3_proc, logs["s3"])
        create_database(pg, pg_proc, logs["postgres"])
        mlflow, mlflow_proc = start_mlflow(root, procs, pg, s3)
        env = node_env(s3, mlflow, token)
        ray, head = start_ray_head(root, procs, token, env, head_cpus)
        wait_http(f"{ray.dashboard_url}/api/jobs/", head, logs["ray-head"], timeout_s, ray.headers())
        worker = start_ray_worker(root, procs, ray, env, worker_cpus)
        wait_http(f"{mlflow.uri}/health", mlflow_proc, logs["mlflow"], timeout_s)
        create_jobs_user(mlflow)
        wait_for(lambda: ray.has_nodes(2), worker, logs["ray-worker"], "the Ray worker node", timeout_s)
        yield ProductionEnv(root, pg, s3, mlflow, ray, logs, time.monotonic() - t0, procs.stop_s)
    finally:
        procs.stop_all()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt), production_environment() as prod:
        print(f"ready in {prod.startup_s:.1f}s under {prod.root}; Ctrl-C stops it. A client's environment:")
        for k, v in sorted(prod.client_env().items()):
            if k.startswith(("AWS_", "MLFLOW_", "RAY_")):
                print(f"export {k}={v}", flush=True)
        signal.pause()


if __name__ == "__main__":
    main()
