"""End to end through the local HTTP server: API-key check, concurrency, alerts recorded for every flagged answer, replay."""
import http.client, json, sqlite3, threading
import numpy as np
import pytest
from fraud_lambda import handler as H
from fraud_lambda.server import LocalAPI, replay
from fraud_lambda.store import open_store
from handler_support import event_body, load_event, local_env, make_bundle

@pytest.fixture(scope='module')
def api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('server')
    open_store(tmp/'store').publish('fraud', make_bundle(tmp/'bundle'), promote=True)
    H.init(local_env(tmp, tmp/'store'))
    srv = LocalAPI(H.handler, api_keys=['test-key']).start()
    yield {'srv': srv, 'tmp': tmp}
    srv.stop()

def _request(api, method, path, body=None, key='test-key'):
    c = http.client.HTTPConnection('127.0.0.1', api['srv'].server_address[1], timeout=10)
    hdr = {'Content-Type': 'application/json', **({'x-api-key': key} if key else {})}
    c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=hdr)
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, dict(r.getheaders()), json.loads(data) if data else None

def test_score_over_http(api, capsys):
    body = {**event_body(load_event('rest_score_fraud')), 'transaction_id': 'http-fraud-1'}
    s, h, b = _request(api, 'POST', '/score', body)
    assert s == 200 and b['decision'] == 'block' and b['reasons'], b
    with capsys.disabled(): print('\nPOST /score', json.dumps(body)[:160], '...\n->', s, json.dumps(b))

def test_api_key_required_except_health(api):
    body = {**event_body(load_event('rest_score_legit')), 'transaction_id': 'http-key-1'}
    assert _request(api, 'POST', '/score', body, key=None)[:1] == (403,)
    s, _, b = _request(api, 'POST', '/score', body, key='wrong')
    assert s == 403 and b == {'message': 'Forbidden'}
    s, _, b = _request(api, 'GET', '/health', key=None)
    assert s == 200 and b['status'] == 'ok'

def test_errors_over_http(api):
    assert _request(api, 'GET', '/nope')[0] == 404
    s, h, _ = _request(api, 'PUT', '/score', {})
    assert s == 405 and h['Allow'] == 'POST'
    s, _, b = _request(api, 'POST', '/score', '{"broken": ')
    assert s == 400 and b['error']['errors'][0]['field'] == 'body'

def test_concurrent_requests_and_alert_count(api):
    legit, fraud = event_body(load_event('rest_score_legit')), event_body(load_event('rest_score_fraud'))
    results, lock = [], threading.Lock()
    def worker(k):
        for i in range(25):
            base = fraud if (k + i) % 5 == 0 else legit
            s, _, b = _request(api, 'POST', '/score', {**base, 'transaction_id': f'conc-{k}-{i}'})
            with lock: results.append((s, b['decision'] if s == 200 else None, f'conc-{k}-{i}'))
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(results) == 200 and all(s == 200 for s, _, _ in results)
    flagged = {tid for _, d, tid in results if d in ('review', 'block')}
    assert len(flagged) == 40
    with sqlite3.connect(api['tmp']/'state.db') as c:
        stored = {r[0] for r in c.execute("select transaction_id from alerts where transaction_id like 'conc-%'")}
    assert stored == flagged

def test_replay_client(api):
    from fraud_lambda.data import synthetic_transactions, time_split, xy
    _, ho = time_split(synthetic_transactions(3000, fraud_rate=0.02, seed=5))
    X, y = xy(ho)
    out = replay(api['srv'].url, X, y, api_key='test-key', concurrency=4, run_tag='replay-test')
    assert out['requests'] == out['ok'] == len(X) and out['errors'] == out['non_2xx'] == 0, out
    assert sum(out['decisions'].values()) == len(X) and out['vs_labels']['tp'] + out['vs_labels']['fn'] == int(y.sum())
    assert out['vs_labels']['recall'] > 0.5 and out['latency_ms']['p50'] > 0

def test_every_method_reaches_the_handler(api):
    "TRACE, PATCH, OPTIONS, ... get the handler's JSON 405 with Allow (or 404), not the stdlib's HTML 501"
    for method in ('TRACE', 'PATCH', 'OPTIONS', 'DELETE', 'PROPFIND'):
        s, h, b = _request(api, method, '/score')
        assert (s, h['Allow'], b['error']['code']) == (405, 'POST', 'method_not_allowed'), (method, s, b)
        assert h['Content-Type'].startswith('application/json')
    s, _, b = _request(api, 'TRACE', '/nope')
    assert (s, b['error']['code']) == (404, 'not_found')
