"""Shared pytest fixtures: a real moto_server over HTTP on 127.0.0.1, started and stopped by the test session."""
from pathlib import Path
import pytest
from fraud_lambda.motoserver import MotoServer, free_port   # one home; tests import them from here too

ROOT = Path(__file__).resolve().parents[1]

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
