#!/usr/bin/env python3
"""Interop with a real Dovecot (Debian's dovecot-core, -imapd, -pop3d,
-lmtpd): users read what hato delivers.

Each test starts hato (interop/run.py's Server) and its own Dovecot
(`dovecot -F -c CONFIG`, base_dir and state under a temp dir, IMAP, POP3
and LMTP on free loopback ports), both reading hato's data_dir: the
passwd-file `users` (written by `hato user add`) and the Maildirs under
`mailboxes/%d/%n`, which hato gives to the mail uid
(`delivery.mailbox_owner`). Python's smtplib sends, imaplib and poplib
read, logging in with the password given to `hato user add`.

Needs root (hato chowns the Maildirs; Dovecot starts as root and drops
to the mail uid). Every wait is bounded; every process is stopped.
Ends with the line 'N passed, N failed'.
"""

import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Server, run_tests  # noqa: E402

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
# The mail uid: nobody/nogroup exists on every Debian system. (A real
# installation creates its own `vmail` user, see docs/dovecot.md.)
MAIL_UID = 65534
PASSWORD = "correct horse battery staple"
TIMEOUT = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """A private Dovecot serving hato's data_dir on loopback ports."""

    def __init__(self, data_dir, lmtp=None):
        self.dir = tempfile.mkdtemp(prefix="hato-dovecot-")
        self.imap, self.pop3, self.lmtp = free_port(), free_port(), lmtp or free_port()
        self.config = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.cert = os.path.join(self.dir, "cert.pem")
        key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=mail.example.test", "-keyout", key, "-out", self.cert],
                       check=True, capture_output=True, timeout=TIMEOUT)
        with open(self.config, "w") as f:
            f.write(config(self.dir, data_dir, self.imap, self.pop3, self.lmtp, self.log_path,
                           self.cert, key))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + TIMEOUT
        waiting = {self.imap, self.pop3, self.lmtp}
        while waiting and time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode()}\n{self.log()}")
            for port in list(waiting):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    waiting.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)
        if waiting:
            raise RuntimeError(f"dovecot did not listen on {waiting}:\n{self.log()}")
        return self

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def config(run_dir, data_dir, imap, pop3, lmtp, log_path, cert, key):
    """The minimal dovecot.conf of docs/dovecot.md, on loopback test ports,
    with its run and state directories under run_dir."""
    return f"""\
protocols = imap pop3 lmtp
listen = 127.0.0.1
base_dir = {run_dir}/run
state_dir = {run_dir}/state
instance_name = hato-test-{os.path.basename(run_dir)}
log_path = {log_path}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{data_dir}/mailboxes/%d/%n
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID username_format=%u {data_dir}/users
}}
userdb {{
  # Every mailbox has the mail uid; a user exists when the passdb has it.
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={data_dir}/mailboxes/%d/%n
}}
service auth {{
  # hato's users file is root's (0600, in a 0700 data_dir).
  user = root
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
"""


def hato_with_users(binary, extra=""):
    """A hato server (not started) whose Maildirs go to MAIL_UID, with
    alice (password) and bob (password) in its users file."""
    # Remote mail (the reports to carol@sender.example) goes to a closed
    # loopback port and stays queued: the test never asks DNS.
    s = Server(
        binary,
        f'[delivery]\nmailbox_owner = "{MAIL_UID}"\nsmarthost = "127.0.0.1:9"\n{extra}',
    )
    # Dovecot's mail processes run as MAIL_UID and must reach data_dir.
    os.chmod(s.dir, 0o711)
    for user in ("alice@example.test", "bob@example.test"):
        r = s.hato("user", "add", user, "--password-stdin", stdin=PASSWORD)
        assert r.returncode == 0, r.stderr
    return s


def send(port, to, subject, body):
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as smtp:
        smtp.ehlo("client.example")
        msg = f"From: carol@sender.example\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n\r\n{body}\r\n"
        refused = smtp.sendmail("carol@sender.example", to, msg)
        assert refused == {}, refused


def assert_login_refused(port, user, password):
    """Dovecot must refuse this IMAP login."""
    try:
        with imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT) as imap:
            imap.login(user, password)
    except imaplib.IMAP4.error:
        return
    raise AssertionError(f"{user} logged in with a password that must fail")


def imap_fetch(port, user, subject, timeout=TIMEOUT):
    """Logs in as `user`, waits until INBOX holds a message with `subject`,
    returns it (bytes)."""
    deadline = time.time() + timeout
    while True:
        with imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT) as imap:
            imap.login(user, PASSWORD)
            imap.select("INBOX")
            typ, data = imap.search(None, "SUBJECT", f'"{subject}"')
            assert typ == "OK", data
            ids = data[0].split()
            if ids:
                typ, msg = imap.fetch(ids[-1], "(RFC822)")
                assert typ == "OK", msg
                imap.logout()
                return msg[0][1]
            imap.logout()
        if time.time() > deadline:
            raise AssertionError(f"no message {subject!r} for {user} over IMAP")
        time.sleep(0.1)


def pop3_messages(port, user):
    pop = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
    finally:
        pop.quit()


def test_maildir_delivery_read_over_imap_and_pop3(binary):
    s = hato_with_users(binary)
    d = Dovecot(s.data)
    try:
        s.start()
        d.start()
        send(s.ports["smtp"], ["alice@example.test"], "via maildir", "Hello Alice,\r\n.dot line\r\nbye")
        msg = imap_fetch(d.imap, "alice@example.test", "via maildir")
        assert b"Hello Alice," in msg and b"\n.dot line" in msg, msg
        assert b"Return-Path: <carol@sender.example>" in msg, msg
        # Dovecot moved it from new/ to cur/ and wrote its index beside it:
        # it could, because hato gave the Maildir to the mail uid.
        box = os.path.join(s.data, "mailboxes", "example.test", "alice")
        assert os.listdir(os.path.join(box, "new")) == []
        [cur] = os.listdir(os.path.join(box, "cur"))
        assert os.stat(os.path.join(box, "cur", cur)).st_uid == MAIL_UID
        assert any(n.startswith("dovecot.index") for n in os.listdir(box)), os.listdir(box)
        # Over STARTTLS, with the certificate Dovecot was given.
        ctx = ssl.create_default_context(cafile=d.cert)
        ctx.check_hostname = False
        with imaplib.IMAP4("127.0.0.1", d.imap, timeout=TIMEOUT) as imap:
            imap.starttls(ssl_context=ctx)
            imap.login("alice@example.test", PASSWORD)
            imap.select("INBOX", readonly=True)
            typ, data = imap.search(None, "ALL")
            assert typ == "OK" and len(data[0].split()) == 1, data
            imap.logout()
        pops = pop3_messages(d.pop3, "alice@example.test")
        assert len(pops) == 1 and b"Subject: via maildir" in pops[0], pops
        # A wrong password is refused by Dovecot as by hato.
        assert_login_refused(d.imap, "alice@example.test", "wrong")
    except Exception:
        print(f"hato log:\n{s.log_text()}\ndovecot log:\n{d.log()}", file=sys.stderr)
        raise
    finally:
        d.stop()
        s.stop()


def test_hato_user_passwd_changes_the_dovecot_password(binary):
    s = hato_with_users(binary)
    d = Dovecot(s.data)
    try:
        d.start()
        with imaplib.IMAP4("127.0.0.1", d.imap, timeout=TIMEOUT) as imap:
            imap.login("bob@example.test", PASSWORD)
            imap.logout()
        r = s.hato("user", "passwd", "bob@example.test", "--password-stdin", stdin="new secret")
        assert r.returncode == 0, r.stderr
        # Dovecot re-reads the passwd-file when it changes (it looks at
        # most once a second).
        deadline = time.time() + 5
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", d.imap, timeout=TIMEOUT) as imap:
                    imap.login("bob@example.test", "new secret")
                    imap.logout()
                break
            except imaplib.IMAP4.error:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        assert_login_refused(d.imap, "bob@example.test", PASSWORD)
    except Exception:
        print(f"dovecot log:\n{d.log()}", file=sys.stderr)
        raise
    finally:
        d.stop()
        s.stop()


def test_lmtp_delivery_is_read_over_imap(binary):
    lmtp = free_port()
    s = hato_with_users(binary, f'local = "lmtp:127.0.0.1:{lmtp}"\n')
    r = s.hato("user", "add", "dave@example.test", "--no-password")
    assert r.returncode == 0, r.stderr
    d = Dovecot(s.data, lmtp)
    try:
        d.start()
        s.start()
        to = ["alice@example.test", "bob@example.test", "dave@example.test"]
        send(s.ports["smtp"], to, "via lmtp", "Hello over LMTP")
        for user in ("alice@example.test", "bob@example.test"):
            msg = imap_fetch(d.imap, user, "via lmtp")
            assert b"Hello over LMTP" in msg, msg
            assert b"Return-Path: <carol@sender.example>" in msg, msg
            assert b"by mail.example.test with ESMTP" in msg, msg
        s.wait_for_log(r"event=dequeue id=\w+", timeout=TIMEOUT)
        for user in to:
            s.wait_for_log(rf"event=deliver id=\w+ to=<{re.escape(user)}> mailbox={re.escape(user)} via=lmtp")
        # dave has no password (receive-only): he cannot log in, but his
        # mail is in his Maildir, written by Dovecot as the mail uid.
        cur_new = [os.path.join(s.data, "mailboxes", "example.test", "dave", sub) for sub in ("new", "cur")]
        files = [os.path.join(d_, n) for d_ in cur_new if os.path.isdir(d_) for n in os.listdir(d_)]
        assert len(files) == 1, files
        assert os.stat(files[0]).st_uid == MAIL_UID
    except Exception:
        print(f"hato log:\n{s.log_text()}\ndovecot log:\n{d.log()}", file=sys.stderr)
        raise
    finally:
        d.stop()
        s.stop()


def test_lmtp_refusal_fails_only_its_recipient(binary):
    lmtp = free_port()
    s = hato_with_users(binary, f'local = "lmtp:127.0.0.1:{lmtp}"\n')
    d = Dovecot(s.data, lmtp)
    try:
        d.start()
        s.start()
        # hato accepts postmaster@ every local domain even without a
        # mailbox; Dovecot's userdb has no such user and refuses it at RCPT.
        send(s.ports["smtp"], ["alice@example.test", "postmaster@example.test"], "one refused", "Hi")
        msg = imap_fetch(d.imap, "alice@example.test", "one refused")
        assert b"Hi" in msg
        s.wait_for_log(r"event=deliver id=\w+ to=<alice@example\.test> .*via=lmtp")
        s.wait_for_log(r"event=bounce id=(\w+) to=<postmaster@example\.test> relay=lmtp:127\.0\.0\.1:\d+ reason=\"550 5\.1\.1 ")
        queue_id = re.search(r"event=bounce id=(\w+)", s.log_text()).group(1)
        # Not retried; the sender gets one report naming it, and the
        # message leaves the queue (the report waits for remote delivery).
        s.wait_for_log(rf"event=report id={queue_id} kind=failure dsn=(\w+) to=carol@sender\.example failed=1")
        s.wait_for_log(rf"event=dequeue id={queue_id} ")
        time.sleep(0.5)
        assert len(re.findall(r"event=bounce ", s.log_text())) == 1, s.log_text()
        r = s.hato("queue", "list")
        assert queue_id not in r.stdout, r.stdout + r.stderr
    except Exception:
        print(f"hato log:\n{s.log_text()}\ndovecot log:\n{d.log()}", file=sys.stderr)
        raise
    finally:
        d.stop()
        s.stop()


TESTS = [
    test_maildir_delivery_read_over_imap_and_pop3,
    test_hato_user_passwd_changes_the_dovecot_password,
    test_lmtp_delivery_is_read_over_imap,
    test_lmtp_refusal_fails_only_its_recipient,
]


def main():
    binaries = sys.argv[1:]
    if not binaries:
        print("usage: dovecot.py BINARY...", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("dovecot interop needs root (Maildir owners, Dovecot's privilege drop)", file=sys.stderr)
        return 1
    return run_tests("dovecot", binaries, TESTS)


if __name__ == "__main__":
    sys.exit(main())
