"""A real, private Postfix MTA for the tests, with STARTTLS and (where Dovecot is installed)
SMTP AUTH through a private Dovecot.

Everything lives in one temporary folder: Postfix's own config, queue and data directories,
Dovecot's config, run and state directories, a CA and a server certificate made with the
openssl CLI, a passwd-file with one user, and the Maildir that every accepted recipient is
delivered to. Postfix listens on 127.0.0.1 on a free port only; it never relays (recipients
outside the test domains are refused at RCPT) and never touches the system instance
(`/etc/postfix` is not read: `postfix -c DIR`).

    with private_postfix() as mta:
        ...send to f"{mta.host}:{mta.port}", STARTTLS verified with cafile=mta.cafile,
        AUTH as mta.username / mta.password...
        raw = await mta.wait_for(1)

With AUTH built the MTA behaves as a submission server: AUTH is offered only after STARTTLS,
and mail from a client that did not authenticate is refused at RCPT with `530 5.7.0`.
Recipients whose local part starts with `reject` are refused with `550 5.1.1`.
Postfix and Dovecot must be started as root (they drop to their own users); where they cannot
run, `missing()` says why and the `postfix_mta` fixture (tests/conftest.py) skips with that
reason. The fixture shares one MTA per session and empties its Maildir before each test.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.smtp import free_port
from tests.support.waiting import eventually

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
# The domains the MTA accepts mail for: any local part at any of them lands in the Maildir.
# bücher.example is there twice, as an A-label and as the U-label an SMTPUTF8 client may send.
DOMAINS = ("example.com", "example.test", "xn--bcher-kva.example", "bücher.example")
HOSTNAME = "mta.mailq.test"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class MtaUnavailable(Exception):
    """The private Postfix (or its Dovecot) did not start; the message has their logs."""


@dataclass
class PostfixMta:
    host: str
    port: int
    cafile: Path  # the CA that signed the server certificate: verify STARTTLS with it
    maildir: Path
    folder: Path
    username: str | None = None  # set when SMTP AUTH (Dovecot SASL) is available
    password: str | None = field(default=None, repr=False)

    @property
    def auth(self) -> bool:
        return self.username is not None

    def url(self, *, auth: bool = True) -> str:
        """An SMTP URL for mailq's backend: STARTTLS verified against the private CA, with
        the test user's credentials when `auth` and AUTH is available."""
        login = ""
        if auth and self.username is not None and self.password is not None:
            login = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"smtp://{login}{self.host}:{self.port}?tls=starttls&cafile={self.cafile}"

    def messages(self) -> list[bytes]:
        """The raw bytes of every delivered message, oldest first (Maildir: LF line ends, with
        the headers Postfix added on top: see `delivered_original`)."""
        files = [f for sub in ("new", "cur") for f in (self.maildir / sub).glob("*") if f.is_file()]
        files.sort(key=lambda f: (f.stat().st_mtime_ns, f.name))
        return [f.read_bytes() for f in files]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Poll the Maildir until at least `count` messages arrived; fail after `timeout` s."""

        async def arrived() -> list[bytes]:
            found = self.messages()
            return found if len(found) >= count else []

        return await eventually(
            arrived, timeout=timeout, message=f"{count} message(s) in {self.maildir}"
        )

    def queued(self) -> int:
        """How many messages Postfix still holds (not yet delivered or bounced)."""
        queue = self.folder / "queue"
        return sum(
            1
            for sub in ("maildrop", "incoming", "active", "deferred", "hold")
            for f in (queue / sub).rglob("*")
            if f.is_file()
        )

    def reset(self) -> None:
        """Let what a previous test left in the queue arrive (bounces too), then empty the
        Maildir: one MTA serves many tests, each starting from an empty Maildir."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.queued():
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix's queue did not drain\n{self.log()}")
            time.sleep(0.02)
        for sub in ("new", "cur"):
            for f in (self.maildir / sub).glob("*"):
                f.unlink()

    def log(self) -> str:
        """Postfix's and Dovecot's logs, for a failing test's message."""
        return _logs(self.folder)


def _logs(folder: Path) -> str:
    parts = []
    for name in ("postfix.log", "dovecot.log"):
        path = folder / "log" / name
        if path.exists():
            parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
    return "\n".join(parts)


def delivered_original(raw: bytes) -> bytes:
    """The message as the client sent it: drop the Return-Path, X-Original-To, Delivered-To
    and the one Received header that Postfix put on top, and restore CRLF line ends."""
    lines = raw.split(b"\n")
    added = {b"return-path:": 1, b"x-original-to:": 1, b"delivered-to:": 1, b"received:": 1}
    index = 0
    while index < len(lines):
        name = lines[index].split(b":", 1)[0].lower() + b":"
        if added.get(name, 0) <= 0:
            break
        added[name] -= 1
        index += 1
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            index += 1  # the header's folded continuation lines
    return b"\r\n".join(lines[index:])


def _run(args: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip()
        raise MtaUnavailable(f"{what} failed ({result.returncode}): {output}")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost (the
    verifying client trusts the CA only, as with a real relay's private CA)."""
    folder.mkdir(mode=0o700)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=mailq test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", str(ca_key), "-out", str(ca_cert)],
        "openssl (the test CA)",
    )  # fmt: skip
    _run(
        ["openssl", "req", *ec, "-subj", f"/CN={HOSTNAME}", "-keyout", str(key),
         "-out", str(request)],
        "openssl (the server key)",
    )  # fmt: skip
    extensions = folder / "server.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{HOSTNAME}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _run(
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
         "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
         "-out", str(cert)],
        "openssl (signing the server certificate)",
    )  # fmt: skip
    return ca_cert, key, cert


MASTER_CF = """\
# service type  private unpriv chroot wakeup maxproc command
{listen} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _main_cf(folder: Path, port: int, tls: tuple[Path, Path], sasl: Path | None) -> str:
    owner = pwd.getpwnam("postfix")
    key, cert = tls
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": folder / "queue",
        "data_directory": folder / "data",
        "maillog_file": folder / "log" / "postfix.log",
        "maillog_file_prefixes": folder / "log",  # the default allows /var only
        "myhostname": HOSTNAME,
        "mydomain": "mailq.test",
        "myorigin": HOSTNAME,
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "mydestination": "",
        "relay_domains": "",
        "alias_maps": "",
        "alias_database": "",
        # Never deliver anywhere but the Maildir, and leave clients' headers as they are.
        "local_transport": "error:5.1.1 no local delivery here",
        "default_transport": "error:5.7.1 this test MTA does not relay",
        "local_header_rewrite_clients": "",
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "smtpd_recipient_restrictions": f"check_recipient_access regexp:{folder}/recipients",
        "virtual_mailbox_domains": " ".join(DOMAINS),
        "virtual_mailbox_base": folder / "mail",
        "virtual_mailbox_maps": "static:inbox/",  # every recipient: one Maildir, inbox/
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
        "virtual_mailbox_limit": "0",
        "message_size_limit": "52428800",
        "smtputf8_enable": "yes",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_chain_files": f"{key}, {cert}",
        "smtpd_tls_loglevel": "1",
        "smtpd_tls_received_header": "yes",  # the Received header says "using TLSv1.3 ..."
        "smtpd_banner": "$myhostname ESMTP mailq test MTA",
        # Answer at once: a test that provokes a refusal must not wait for the tarpit.
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "100",
        "smtpd_hard_error_limit": "200",
        "smtpd_client_auth_rate_limit": "0",
        "smtpd_delay_reject": "yes",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "biff": "no",
    }
    if sasl is not None:
        settings.update(
            {
                "smtpd_sasl_auth_enable": "yes",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": sasl,
                "smtpd_tls_auth_only": "yes",  # AUTH is offered only after STARTTLS
                "smtpd_sasl_security_options": "noanonymous",
                # A submission server: mail only from authenticated clients (RFC 4954's 530).
                "smtpd_recipient_restrictions": (
                    f"check_recipient_access regexp:{folder}/recipients, "
                    "permit_sasl_authenticated, "
                    "check_client_access static:{530 5.7.0 Authentication required}"
                ),
            }
        )
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


DOVECOT_CONF = """\
instance_name = {instance}
base_dir = {folder}/dovecot/run
state_dir = {folder}/dovecot/state
log_path = {folder}/log/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# A refusal comes at the next 500 ms tick of Dovecot's failure timer, not after 2 s.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=postfix gid=postfix home={folder}/mail
}}
# No growing delay after failed logins from 127.0.0.1 (a test provokes them on purpose).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


def missing() -> str | None:
    """Why no private Postfix can run here (a reason to skip), or None."""
    if not Path(POSTFIX).exists():
        return "postfix is not installed (apt-get install postfix; .ci/run installs it)"
    if os.geteuid() != 0:
        return "a private Postfix must be started as root (it drops to the postfix user)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (it makes the test certificates)"
    return None


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(512).startswith(b"220 ")
    except OSError:
        return False


def _wait(check: Callable[[], bool], what: str, folder: Path) -> None:
    """Poll `check` until it holds; past START_TIMEOUT_S fail with both logs."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise MtaUnavailable(f"{what} within {START_TIMEOUT_S}s\n{_logs(folder)}")
        time.sleep(0.02)


@contextmanager
def _dovecot(folder: Path, instance: str) -> Iterator[tuple[Path, str, str]]:
    """A private Dovecot that does SASL only: one passwd-file user, one auth socket for
    Postfix. Runs in the foreground as our child; terminated on exit."""
    for sub in ("dovecot", "dovecot/state", "sasl"):
        (folder / sub).mkdir(mode=0o755)
    username, password = "mailq", secrets.token_urlsafe(12)
    users = folder / "dovecot" / "users"
    users.write_text(f"{username}:{{PLAIN}}{password}::::::\n")
    internal = pwd.getpwnam("dovecot")
    os.chown(users, internal.pw_uid, internal.pw_gid)
    users.chmod(0o600)
    sock = folder / "sasl" / "auth"
    config = folder / "dovecot" / "dovecot.conf"
    config.write_text(DOVECOT_CONF.format(instance=instance, folder=folder, socket=sock))
    stderr = folder / "log" / "dovecot.stderr"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                output = stderr.read_text(errors="replace").strip()
                raise MtaUnavailable(f"dovecot exited ({process.returncode}): {output}")
            return sock.is_socket()

        _wait(ready, "dovecot's auth socket did not appear", folder)
        yield sock, username, password
    finally:
        # The whole group at once: dovecot's master alone waits a second for its children.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _wait_group_gone(process.pid)


# The queue directories as Debian's postfix-files has them: (name, group, mode); owner postfix.
QUEUE_DIRECTORIES = [
    *((name, None, 0o700) for name in ("active", "bounce", "corrupt", "defer", "deferred")),
    *((name, None, 0o700) for name in ("flush", "hold", "incoming", "private", "saved", "trace")),
    ("maildrop", "postdrop", 0o730),
    ("public", "postdrop", 0o710),
]


def _make_directories(folder: Path) -> None:
    """Postfix's queue and data directories, made here and not by `postfix start`'s checks
    (post-install create-missing spawns some forty mkdir/chown/chmod: seconds on a busy
    machine). The `quick-start` file tells postfix-script that the checks were done; were it
    ignored, the checks would find nothing to fix."""
    owner = pwd.getpwnam("postfix")
    queue = folder / "queue"
    queue.mkdir(mode=0o755)
    (queue / "pid").mkdir(mode=0o755)
    for name, group, mode in QUEUE_DIRECTORIES:
        path = queue / name
        path.mkdir()
        gid = grp.getgrnam(group).gr_gid if group else owner.pw_gid
        os.chown(path, owner.pw_uid, gid)
        path.chmod(mode)
    for sub in ("data", "mail"):
        (folder / sub).mkdir(mode=0o700)
        os.chown(folder / sub, owner.pw_uid, owner.pw_gid)
    (queue / "quick-start").touch()


def _write_settled(path: Path, text: str) -> None:
    """Write a file Postfix reads, dated in the past: Postfix waits (in steps of 300 ms) until
    a configuration file it opens is at least a second or two old, in case it is being edited."""
    path.write_text(text)
    past = time.time() - 60
    os.utime(path, (past, past))


@contextmanager
def _postfix(folder: Path, port: int, tls: tuple[Path, Path], sasl: Path | None) -> Iterator[None]:
    config = folder / "postfix"
    config.mkdir(mode=0o755)
    _make_directories(folder)
    _write_settled(config / "main.cf", _main_cf(folder, port, tls, sasl))
    _write_settled(config / "master.cf", MASTER_CF.format(listen=f"127.0.0.1:{port}"))
    _write_settled(folder / "recipients", "/^reject/ 550 5.1.1 no such user here\n")
    pid_file = folder / "queue" / "pid" / "master.pid"
    try:
        # Returns once master(8) reports that it initialised (`master -w`): it listens.
        try:
            _run([POSTFIX, "-c", str(config), "start"], "postfix start", cwd=folder)
        except MtaUnavailable as exc:
            raise MtaUnavailable(f"{exc}\n{_logs(folder)}") from None
        _wait(lambda: _banner(port), f"no SMTP banner on port {port}", folder)
        yield
    finally:
        if pid_file.exists():
            _stop_master(int(pid_file.read_text().split()[0]))


def _stop_master(pid: int) -> None:
    """What `postfix stop` does, without its one-second sleeps: SIGTERM to our master(8),
    which signals its process group, then wait until that group is gone."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    _wait_group_gone(pid)


def _wait_group_gone(group: int) -> None:
    """Wait until no process of this group (one we started) runs; SIGKILL it past
    STOP_TIMEOUT_S."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _group_alive(group):
        if time.monotonic() > deadline:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            return
        time.sleep(0.02)


def _group_alive(group: int) -> bool:
    """Whether a process of this process group is still running (zombies do not count: the
    orphans are reaped by PID 1, which may take its time)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


@contextmanager
def private_postfix(*, auth: bool = True) -> Iterator[PostfixMta]:
    """Start a private Postfix (and Dovecot for AUTH when `auth` and Dovecot is installed);
    stop both and remove every file on exit, also when start-up fails."""
    reason = missing()
    if reason is not None:
        raise MtaUnavailable(reason)
    with ExitStack() as stack:
        # Not under pytest's tmp_path: postfix and dovecot must traverse the parents, and each
        # pytest session resets /tmp/pytest-of-root to 0700.
        folder = Path(tempfile.mkdtemp(prefix="mailq-mta-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o755)
        (folder / "log").mkdir(mode=0o755)
        cafile, key, cert = _certificates(folder / "tls")
        username = password = sasl = None
        if auth and Path(DOVECOT).exists():
            sasl, username, password = stack.enter_context(_dovecot(folder, folder.name))
        port = free_port()
        stack.enter_context(_postfix(folder, port, (key, cert), sasl))
        yield PostfixMta(
            host="127.0.0.1",
            port=port,
            cafile=cafile,
            maildir=folder / "mail" / "inbox",
            folder=folder,
            username=username,
            password=password,
        )
