"""The API contract checked from outside, against `fraud-lambda serve` on a free port (API key required): schemathesis
with `--checks all` over the served /openapi.json, the deep-nesting class of bodies, the committed Postman collection
against a freshly generated one, and newman running that collection."""
import contextlib, json, os, shutil, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT, free_port
from handler_support import local_env, make_bundle
from fraud_lambda.config import load_settings
from fraud_lambda.postman import CASES, build_collection, postman_files
from fraud_lambda.routes import openapi_document
from fraud_lambda.store import open_store

API_KEY = 'contract-test-key'
BIN = Path(sys.executable).parent
NEWMAN = ROOT/'node_modules'/'.bin'/'newman'
ST_EXAMPLES = 25   # per operation and phase: about 1,000 requests, ~20 s on 2 cores
ST_SEED = 16       # reproducible in CI; FRAUD_LAMBDA_ST_SEED=<n> tries another

@contextlib.contextmanager
def _serve(tmp):
    "`fraud-lambda serve --api-key` on a free port over a demo model in a local store; yields (url, log path)"
    open_store(tmp/'store').publish('fraud', make_bundle(tmp/'bundle'), promote=True)
    port, log = free_port(), tmp/'serve.log'
    env = {**os.environ, **local_env(tmp, tmp/'store'), 'FRAUD_LAMBDA_METRICS': 'off'}
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, '-m', 'fraud_lambda.cli', 'serve', '--port', str(port),
                                 '--api-key', API_KEY], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f'fraud-lambda serve exited: {log.read_text()[-2000:]}'
            try:
                with urllib.request.urlopen(url + '/health', timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            assert time.monotonic() < end, 'fraud-lambda serve did not answer /health within 60 s'
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()

@pytest.fixture(scope='module')
def api(tmp_path_factory):
    with _serve(tmp_path_factory.mktemp('contract')) as served: yield served

def _post(url, path, body:str, key=API_KEY):
    req = urllib.request.Request(url + path, data=body.encode(), method='POST',
                                 headers={'Content-Type': 'application/json', 'x-api-key': key})
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read())

def _unhandled(log:Path) -> list:
    return [line[:300] for line in log.read_text().splitlines() if 'unhandled error' in line]

def test_served_document_is_the_generated_one(api):
    "What /openapi.json serves is `routes.openapi_document`, so the committed collection is generated from it"
    url, _ = api
    req = urllib.request.Request(url + '/openapi.json', headers={'x-api-key': API_KEY})
    with urllib.request.urlopen(req, timeout=10) as r: served = json.loads(r.read())
    assert served == openapi_document(load_settings({}).batch_limit)
    committed = json.loads((ROOT/'api'/'fraud-lambda.postman_collection.json').read_text())
    assert build_collection(served) == committed

def test_postman_files_are_current():
    "The committed collection and environments are what `make postman` writes now (they cannot drift)"
    for name, text in postman_files().items():
        path = ROOT/'api'/name
        assert path.exists() and path.read_text() == text, f'{path} is stale: run `make postman` and commit it'

@pytest.mark.parametrize('body', [
    '{"a":' * 5_000 + '1' + '}' * 5_000,
    '{"a":' * 30_000 + '1' + '}' * 30_000,
    '{"transaction_id": "deep", "metadata": ' + '[' * 20_000 + ']' * 20_000 + '}',
    '{"transactions": [' + '{"a":' * 5_000 + '{}' + '}' * 5_000 + ']}',
    '{"Time": 1' + '0' * 10_000 + '}'], ids=['object-5k', 'object-30k', 'array-20k', 'in-batch', 'huge-integer'])
def test_unparseable_bodies_are_400(api, body):
    "Bodies nested thousands of levels deep, or with a 10,000-digit number: a 400 naming the problem on both routes"
    url, log = api
    for path in ('/score', '/score/batch'):
        status, answer = _post(url, path, body)
        assert (status, answer['error']['code']) == (400, 'invalid_body'), (path, status, answer)
        assert answer['error']['errors'][0]['field'] == 'body'
    assert not _unhandled(log)

@pytest.mark.timeout(600)
def test_schemathesis_all_checks(api, capsys):
    "schemathesis --checks all against the served document: 0 failures, and no unhandled error in the server's log"
    url, log = api
    cmd = [str(BIN/'schemathesis'), 'run', f'{url}/openapi.json', '--checks', 'all', '-H', f'x-api-key: {API_KEY}',
           '--max-examples', str(ST_EXAMPLES), '--seed', os.environ.get('FRAUD_LAMBDA_ST_SEED', str(ST_SEED)),
           '--request-timeout', '30', '--no-color']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=580, cwd=log.parent)   # its cache stays in tmp
    summary = r.stdout[r.stdout.find('SUMMARY') - 40:] if 'SUMMARY' in r.stdout else r.stdout[-3000:]
    with capsys.disabled(): print('\nschemathesis', ' '.join(cmd[2:4]), '--checks all\n' + summary)
    assert r.returncode == 0 and 'No issues found' in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]
    assert not _unhandled(log)

def test_newman_runs_the_collection(tmp_path, capsys):
    "newman runs the committed collection against a fresh local API: every request and every assertion passes"
    if not NEWMAN.exists():
        if shutil.which('npm') is None: pytest.skip('no npm on this machine; newman cannot be installed')
        pytest.fail('newman is not installed: run `make newman` (npm ci; make test does it)')
    report = tmp_path/'newman.json'
    with _serve(tmp_path) as (url, log):
        r = subprocess.run([str(NEWMAN), 'run', str(ROOT/'api'/'fraud-lambda.postman_collection.json'),
                            '-e', str(ROOT/'api'/'local.postman_environment.json'), '--env-var', f'baseUrl={url}',
                            '--env-var', f'api_key={API_KEY}', '--reporters', 'cli,json',
                            '--reporter-json-export', str(report), '--disable-unicode', '--color', 'off'],
                           capture_output=True, text=True, timeout=120)
    table = r.stdout.find('executed')
    with capsys.disabled(): print('\nnewman\n' + r.stdout[max(table - 200, 0) if table >= 0 else -2500:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    run = json.loads(report.read_text())['run']
    assert [e['item']['name'] for e in run['executions']] == [c['name'] for c in CASES]
    assert run['stats']['requests'] == {'total': len(CASES), 'pending': 0, 'failed': 0}
    assert run['stats']['assertions']['failed'] == 0 and run['stats']['assertions']['total'] >= 3 * len(CASES)
    assert all(e.get('assertions') and not any('error' in a for a in e['assertions']) for e in run['executions'])
    assert not _unhandled(log)
