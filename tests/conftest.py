"""Shared pytest fixtures: a real moto_server over HTTP on 127.0.0.1, started and stopped by the test session."""
import os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def free_port() -> int:
    "A TCP port that is free on 127.0.0.1 right now"
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _wait_http(url, timeout=30.0):
    "Poll `url` until it answers 200"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.1)
    raise RuntimeError(f'{url} did not come up within {timeout} s')

class MotoServer:
    "A `moto_server` subprocess on 127.0.0.1:`port`"
    def __init__(self, port=None):
        self.port = port or free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self.proc = None
    def start(self):
        exe = Path(sys.executable).with_name('moto_server')
        cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'moto.server']
        self.proc = subprocess.Popen(cmd + ['-H', '127.0.0.1', '-p', str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_http(self.endpoint + '/moto-api/')
        return self
    def reset(self):
        req = urllib.request.Request(self.endpoint + '/moto-api/reset', method='POST')
        urllib.request.urlopen(req, timeout=5).read()
    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try: self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
    @property
    def running(self): return self.proc is not None and self.proc.poll() is None

@pytest.fixture(scope='session')
def moto_server():
    "One moto_server for the session; tests that stop it must use `moto_server_private`"
    srv = MotoServer().start()
    yield srv
    srv.stop()

@pytest.fixture()
def moto_private():
    "A moto_server of this test's own, which the test may stop and restart (fault injection)"
    srv = MotoServer().start()
    yield srv
    srv.stop()

@pytest.fixture()
def aws_env(moto_server, monkeypatch):
    "Fake credentials and region pointing at the session moto_server, state reset before the test"
    moto_server.reset()
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'testing')
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'testing')
    monkeypatch.setenv('AWS_SESSION_TOKEN', 'testing')
    monkeypatch.setenv('AWS_DEFAULT_REGION', 'us-east-1')
    monkeypatch.setenv('AWS_ENDPOINT_URL', moto_server.endpoint)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    return moto_server
