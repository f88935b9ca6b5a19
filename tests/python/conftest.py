# SPDX-License-Identifier: MIT
"""Fixtures: a real allocd (the one just built, ALLOCD_PATH) per test, on a socket in a fresh
temporary directory, started as tests/harness.c starts it: --config FILE, and ready when it says
READY=1 on a NOTIFY_SOCKET bound here, so nothing sleeps and hopes."""
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import allocd

ALLOCD = os.environ.get("ALLOCD_PATH", "build/daemon/allocd")
ALLOCCTL = os.environ.get("ALLOCCTL_PATH", "build/client/allocctl")

CONFIG = """\
[pool h]
kind = host
size = 4M
mode = 0664
[pool small]
kind = host
size = 64K
[pool quota]
kind = host
size = 1M
mode = 0666
quota_per_uid = 64K
[pool private]
kind = host
size = 1M
mode = 0600
[pool f]
kind = fpga
ranges = 0x1000+1M
"""


class Daemon:
    def __init__(self, config):
        self.dir = tempfile.mkdtemp(prefix="allocd-py-test-")
        os.chmod(self.dir, 0o755)  # other uids connect too
        self.sock = os.path.join(self.dir, "allocd.sock")
        conf = os.path.join(self.dir, "allocd.conf")
        with open(conf, "w") as f:
            f.write(config)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(os.path.join(self.dir, "notify"))
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(self.dir, "notify"))
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen([ALLOCD, "--socket", self.sock, "--config", conf], env=env,
                                     stderr=self.log)
        if not self.notified(b"READY=1", 20):
            self.proc.kill()
            raise RuntimeError("allocd did not become ready: " + self.logtext())

    def notified(self, what, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.notify.settimeout(max(0.01, end - time.monotonic()))
            try:
                if what in self.notify.recv(4096):
                    return True
            except socket.timeout:
                pass
            if self.proc.poll() is not None:
                return False
        return False

    def logtext(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.notify.close()
        self.log.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def connect(self, name="test"):
        return allocd.connect(self.sock, name=name)

    def python(self, code, *args, **kw):
        """Another Python process running code with this module; argv[1] is the socket."""
        return subprocess.Popen([sys.executable, "-c", code, self.sock] + [str(a) for a in args],
                                stdout=subprocess.PIPE, text=True, **kw)


def daemon_fixture(config, skip=None):
    """A fixture: a Daemon on config.  skip: where allocd cannot start, skip with this reason (%s: why)."""
    @pytest.fixture
    def fixture():
        try:
            d = Daemon(config)
        except RuntimeError as e:
            if skip is None:
                raise
            pytest.skip(skip % e)
        yield d
        d.stop()
    return fixture


daemon = daemon_fixture(CONFIG)
PINNED_SKIP = "allocd cannot make a pinned pool here (RLIMIT_MEMLOCK?): %s"


@pytest.fixture
def client(daemon):
    with daemon.connect() as c:
        yield c


def used(c, pool):
    return next(p["used"] for p in c.status()["pools"] if p["name"] == pool)


def wait_used(c, pool, want, timeout=10):
    """allocd learns of a close when it next reads the socket: poll, as tests/harness.c does."""
    end = time.monotonic() + timeout
    while used(c, pool) != want and time.monotonic() < end:
        time.sleep(0.002)
    return used(c, pool)


def region_ids(c):
    return [r["id"] for r in c.dump()]


def as_nobody(fn):
    """Runs fn in a forked child as nobody (the module is loaded already: no file to read); its exit
    status is what fn returned, or 99 if it raised (the exception is printed)."""
    if os.getuid() != 0:
        pytest.skip("needs root, to run a child as nobody")
    gc.collect()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
