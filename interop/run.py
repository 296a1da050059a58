#!/usr/bin/env python3
"""Interop tests: real clients (swaks) against both hato binaries on loopback.

Each test starts a server with its own data directory and a config that
listens on 127.0.0.1 port 0, reads the chosen port from the server's
`event=listening` log line, talks to it with the real client, and checks
the outcome on disk (the Maildir) and in the log. Ends with the line
'N passed, N failed'.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HOST = "mail.example.test"


class Server:
    """A hato server process on a private data directory."""

    def __init__(self, binary, extra_config=""):
        self.binary = os.path.abspath(binary)
        self.dir = tempfile.mkdtemp(prefix="hato-interop-")
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "hato.toml")
        with open(self.config, "w") as f:
            f.write(
                f'hostname = "{HOST}"\ndata_dir = "{self.data}"\n'
                '[listen]\nsmtp = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:0"]\n'
                + extra_config
            )
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None
        self.ports = {}

    def hato(self, *args, stdin=None):
        return subprocess.run(
            [self.binary, *args, "--config", self.config],
            input=stdin, capture_output=True, text=True, timeout=60,
        )

    def start(self):
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config],
            stdout=subprocess.DEVNULL, stderr=self.log,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            text = self.log_text()
            for listener, port in re.findall(r"event=listening listener=(\w+) addr=127\.0\.0\.1:(\d+)", text):
                self.ports[listener] = int(port)
            if "smtp" in self.ports and "submission" in self.ports:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{text}")
            time.sleep(0.05)
        raise RuntimeError("server did not report its listeners")

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def maildir_files(self, address):
        local, domain = address.split("@")
        new = os.path.join(self.data, "mailboxes", domain, local, "new")
        if not os.path.isdir(new):
            return []
        return sorted(os.path.join(new, n) for n in os.listdir(new))

    def wait_for_mail(self, address, count=1, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            files = self.maildir_files(address)
            if len(files) >= count:
                return files
            time.sleep(0.05)
        raise AssertionError(f"{count} message(s) for {address} not delivered; log:\n{self.log_text()}")

    def wait_for_log(self, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.log_text()):
                return
            time.sleep(0.05)
        raise AssertionError(f"log has no line matching {pattern!r}:\n{self.log_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def swaks(port, *args):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port),
           "--helo", "client.example", "--timeout", "20", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_swaks_delivers_to_maildir(binary):
    s = Server(binary)
    try:
        r = s.hato("user", "add", "alice@example.test", "--no-password")
        assert r.returncode == 0, r.stderr
        s.start()
        r = swaks(s.ports["smtp"], "--to", "alice@example.test", "--from", "bob@sender.example",
                  "--header", "Subject: interop via swaks", "--body", "Hello Alice,\n..a stuffed line\nbye")
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"<-  250 2\.0\.0 Ok: queued as \w+", r.stdout), r.stdout
        [path] = s.wait_for_mail("alice@example.test")
        text = open(path, "rb").read().decode()
        assert text.startswith("Return-Path: <bob@sender.example>\n"), text[:200]
        assert "Delivered-To: alice@example.test\n" in text
        assert f"by {HOST} with ESMTP id" in text
        assert "Subject: interop via swaks\n" in text
        assert "\nHello Alice,\n..a stuffed line\nbye\n" in text, text
        assert "\r" not in text, "Maildir files use LF line endings"
        s.wait_for_log(r"event=deliver .*to=<alice@example\.test>")
    finally:
        s.stop()


def test_swaks_pipelining_two_recipients(binary):
    s = Server(binary)
    try:
        for u in ("alice", "bob"):
            r = s.hato("user", "add", f"{u}@example.test", "--no-password")
            assert r.returncode == 0, r.stderr
        s.start()
        r = swaks(s.ports["smtp"], "--pipeline", "--to", "alice@example.test,bob@example.test",
                  "--from", "carol@sender.example", "--body", "pipelined")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "PIPELINING" in r.stdout
        s.wait_for_mail("alice@example.test")
        s.wait_for_mail("bob@example.test")
    finally:
        s.stop()


def test_swaks_unknown_user_is_refused_at_rcpt(binary):
    s = Server(binary)
    try:
        s.start()
        r = swaks(s.ports["smtp"], "--to", "nobody@example.test", "--from", "x@sender.example")
        assert r.returncode != 0
        assert "550 5.1.1" in r.stdout, r.stdout
        s.wait_for_log(r"event=refuse .*stage=rcpt code=550 reason=\"unknown local user")
    finally:
        s.stop()


def test_swaks_submission_requires_auth(binary):
    s = Server(binary)
    try:
        s.start()
        r = swaks(s.ports["submission"], "--to", "x@elsewhere.example", "--from", "a@example.test")
        assert r.returncode != 0
        assert "530 5.7.0" in r.stdout, r.stdout
    finally:
        s.stop()


def test_swaks_oversized_message_is_refused(binary):
    s = Server(binary, '[limits]\nmax_message_size = "2K"\n')
    try:
        s.hato("user", "add", "alice@example.test", "--no-password")
        s.start()
        r = swaks(s.ports["smtp"], "--to", "alice@example.test", "--from", "x@sender.example",
                  "--body", "x" * 5000)
        assert "552 5.3.4" in r.stdout, r.stdout
        time.sleep(0.3)
        assert s.maildir_files("alice@example.test") == []
    finally:
        s.stop()


def with_alice_password(s, password="s3cret pass"):
    r = s.hato("user", "add", "alice@example.test", "--password-stdin", stdin=password + "\n")
    assert r.returncode == 0, r.stderr
    r = s.hato("user", "add", "bob@example.test", "--no-password")
    assert r.returncode == 0, r.stderr


def test_swaks_starttls_auth_plain_relays(binary):
    s = Server(binary)
    try:
        with_alice_password(s)
        s.start()
        r = swaks(s.ports["submission"], "--tls", "--auth", "PLAIN",
                  "--auth-user", "alice@example.test", "--auth-password", "s3cret pass",
                  "--from", "alice@example.test", "--to", "carol@elsewhere.example",
                  "--header", "From: alice@example.test", "--body", "relayed after AUTH")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "<-  220 2.0.0 Ready to start TLS" in r.stdout, r.stdout
        assert "235 2.7.0 Authentication successful" in r.stdout, r.stdout
        assert re.search(r"250 2\.0\.0 Ok: queued as \w+", r.stdout), r.stdout
        s.wait_for_log(r"event=auth .*user=alice@example\.test mechanism=PLAIN")
        s.wait_for_log(r"event=tls .*version=TLSv1_3")
    finally:
        s.stop()


def test_swaks_starttls_auth_login_delivers_with_message_id(binary):
    s = Server(binary)
    try:
        with_alice_password(s)
        s.start()
        r = swaks(s.ports["submission"], "--tls", "--auth", "LOGIN",
                  "--auth-user", "alice@example.test", "--auth-password", "s3cret pass",
                  "--from", "alice@example.test", "--to", "bob@example.test",
                  "--add-header", "X-Test: login", "--suppress-data", "--data",
                  "From: alice@example.test\nSubject: no id\n\nbody\n")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "334 VXNlcm5hbWU6" in r.stdout, r.stdout
        [path] = s.wait_for_mail("bob@example.test")
        text = open(path).read()
        assert "\nMessage-ID: <" in text and "\nDate: " in text, text
    finally:
        s.stop()


def test_swaks_wrong_password_and_spoofing_are_refused(binary):
    s = Server(binary)
    try:
        with_alice_password(s)
        s.start()
        r = swaks(s.ports["submission"], "--tls", "--auth", "PLAIN",
                  "--auth-user", "alice@example.test", "--auth-password", "wrong",
                  "--from", "alice@example.test", "--to", "carol@elsewhere.example")
        assert r.returncode != 0
        assert "535 5.7.8" in r.stdout, r.stdout
        s.wait_for_log(r"event=refuse .*stage=auth code=535 reason=\"authentication failed for user alice@example\.test\"")
        r = swaks(s.ports["submission"], "--tls", "--auth", "PLAIN",
                  "--auth-user", "alice@example.test", "--auth-password", "s3cret pass",
                  "--from", "bob@example.test", "--to", "carol@elsewhere.example")
        assert r.returncode != 0
        assert "553 5.7.1" in r.stdout, r.stdout
    finally:
        s.stop()


def test_swaks_port_25_offers_no_auth_without_tls(binary):
    s = Server(binary)
    try:
        with_alice_password(s)
        s.start()
        r = swaks(s.ports["smtp"], "--auth", "PLAIN", "--auth-user", "alice@example.test",
                  "--auth-password", "s3cret pass", "--from", "alice@example.test",
                  "--to", "carol@elsewhere.example")
        assert r.returncode != 0
        assert "250-STARTTLS" in r.stdout, r.stdout
        assert "AUTH PLAIN" not in r.stdout.split("STARTTLS")[1].split("HELP")[0], r.stdout
    finally:
        s.stop()


def test_swaks_implicit_tls(binary):
    s = Server(binary, "submissions = [\"127.0.0.1:0\"]\n")
    try:
        with_alice_password(s)
        s.start()
        s.wait_for_log(r"event=listening listener=submissions")
        port = int(re.search(r"listener=submissions addr=127\.0\.0\.1:(\d+)", s.log_text()).group(1))
        r = swaks(port, "--tls-on-connect", "--auth", "PLAIN",
                  "--auth-user", "alice@example.test", "--auth-password", "s3cret pass",
                  "--from", "alice@example.test", "--to", "bob@example.test")
        assert r.returncode == 0, r.stdout + r.stderr
        s.wait_for_mail("bob@example.test")
    finally:
        s.stop()


TESTS = [
    test_swaks_delivers_to_maildir,
    test_swaks_pipelining_two_recipients,
    test_swaks_unknown_user_is_refused_at_rcpt,
    test_swaks_submission_requires_auth,
    test_swaks_oversized_message_is_refused,
    test_swaks_starttls_auth_plain_relays,
    test_swaks_starttls_auth_login_delivers_with_message_id,
    test_swaks_wrong_password_and_spoofing_are_refused,
    test_swaks_port_25_offers_no_auth_without_tls,
    test_swaks_implicit_tls,
]


def run_tests(label, binaries, tests):
    """Runs every test against every binary; prints one line each and a
    summary; returns the exit status."""
    passed = failed = 0
    for binary in binaries:
        for test in tests:
            name = f"{os.path.basename(binary)}::{test.__name__}"
            try:
                test(binary)
                passed += 1
                print(f"ok      {name}")
            except Exception:
                failed += 1
                print(f"FAILED  {name}")
                traceback.print_exc()
    print(f"{label}: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    binaries = sys.argv[1:]
    if not binaries:
        print("usage: run.py BINARY...", file=sys.stderr)
        return 2
    return run_tests("interop", binaries, TESTS)


if __name__ == "__main__":
    sys.exit(main())
