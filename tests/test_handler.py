"""The Lambda handler with the committed SAM-generated events (REST v1, HTTP API v2, function URL) and every class of bad input."""
import base64, json, math, sqlite3, time
import pytest
from fraud_lambda import handler as H
from fraud_lambda.config import ConfigError
from fraud_lambda.store import open_store
from handler_support import (Context, as_function_url, call, event_body, load_event, local_env, make_bundle, with_body, with_route)

@pytest.fixture(scope='module')
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('handler')
    store = open_store(tmp/'store')
    version = store.publish('fraud', make_bundle(tmp/'bundle'), promote=True)['version']
    svc = H.init(local_env(tmp, tmp/'store'))
    assert svc.holder.scorer is not None, svc.holder.error
    return {'tmp': tmp, 'version': version, 'store': store}

def _no_leak(body_text):
    assert 'Traceback' not in body_text and '.py' not in body_text and '/work/' not in body_text and '/tmp/' not in body_text

def _alerts_for(tmp, tid):
    with sqlite3.connect(tmp/'state.db') as c:
        return c.execute("select count(*) from alerts where transaction_id = ?", (tid,)).fetchone()[0]

# ---------------------------------------------------------------- the committed events

@pytest.mark.parametrize('fmt', ['rest', 'http', 'url'])
def test_fraud_and_legit_events(served, fmt):
    base = 'rest' if fmt == 'rest' else 'http'
    fraud, legit = load_event(f'{base}_score_fraud'), load_event(f'{base}_score_legit')
    if fmt == 'url': fraud, legit = as_function_url(fraud), as_function_url(legit)
    assert fraud['isBase64Encoded'] and not any(k.lower() == 'content-type' for k in fraud['headers'])
    fraud = with_body(fraud, event_body(fraud), tid=f'{fmt}-fraud')
    legit = with_body(legit, event_body(legit), tid=f'{fmt}-legit')
    s, h, b = call(H.handler, fraud)
    assert s == 200, b
    assert b['decision'] == 'block' and b['fraud_probability'] > 0.9 and b['model_version'] == served['version']
    assert 1 <= len(b['reasons']) <= 3 and all(r['contribution'] > 0 for r in b['reasons'])
    assert [r['contribution'] for r in b['reasons']] == sorted((r['contribution'] for r in b['reasons']), reverse=True)
    assert b['latency_ms'] > 0 and h['content-type'].startswith('application/json')
    s, _, b = call(H.handler, legit)
    assert s == 200 and b['decision'] == 'approve' and b['fraud_probability'] < 0.5

def test_plain_body_and_content_types(served):
    e = load_event('rest_score_legit'); body = event_body(e)
    for i, ct in enumerate([None, 'application/json', 'application/json; charset=utf-8']):
        ev = with_body(e, body, b64=False, tid=f'ct-{i}')
        if ct: ev['headers']['Content-Type'] = ct
        s, _, b = call(H.handler, ev)
        assert s == 200 and b['decision'] == 'approve', (ct, b)

def test_bad_request_event_names_fields(served):
    s, _, b = call(H.handler, load_event('rest_score_bad'))
    assert s == 400 and b['error']['code'] == 'invalid_request'
    fields = {e['field'] for e in b['error']['errors']}
    assert {'Amount', 'V7'} <= fields, b
    _no_leak(json.dumps(b))
    s, _, b2 = call(H.handler, load_event('http_score_bad'))
    assert s == 400 and {e['field'] for e in b2['error']['errors']} == fields

# ---------------------------------------------------------------- bad input, class by class

GOOD = None
def _good():
    global GOOD
    GOOD = GOOD or event_body(load_event('rest_score_legit'))
    return dict(GOOD)

def _bad_cases():
    g = _good
    return [
        ('malformed JSON', '{"transaction_id": "x", ', 400, 'body'),
        ('JSON array', json.dumps([g()]), 400, None),
        ('JSON string', json.dumps('hello'), 400, None),
        ('empty body', '', 400, None),
        ('missing field', json.dumps({k: v for k, v in g().items() if k != 'V3'}), 400, 'V3'),
        ('extra field', json.dumps({**g(), 'amount': 3}), 400, 'amount'),
        ('string number', json.dumps({**g(), 'V5': '1.5'}), 400, 'V5'),
        ('boolean number', json.dumps({**g(), 'V5': True}), 400, 'V5'),
        ('null number', json.dumps({**g(), 'V5': None}), 400, 'V5'),
        ('NaN literal', json.dumps({**g(), 'V6': 1}).replace('"V6": 1', '"V6": NaN'), 400, 'V6'),
        ('Infinity literal', json.dumps({**g(), 'V6': 1}).replace('"V6": 1', '"V6": -Infinity'), 400, 'V6'),
        ('huge integer', json.dumps({**g(), 'V6': 1}).replace('"V6": 1', '"V6": ' + '9' * 400), 400, 'V6'),
        ('negative Amount', json.dumps({**g(), 'Amount': -3.0}), 400, 'Amount'),
        ('finite but beyond 1e12', json.dumps({**g(), 'V21': -1.7976931348623157e308}), 400, 'V21'),
        ('Amount beyond 1e12', json.dumps({**g(), 'Amount': 2e12}), 400, 'Amount'),
        ('bad transaction_id', json.dumps({**g(), 'transaction_id': 'a b/c'}), 400, 'transaction_id'),
        ('long transaction_id', json.dumps({**g(), 'transaction_id': 'x' * 129}), 400, 'transaction_id'),
        ('empty transaction_id', json.dumps({**g(), 'transaction_id': ''}), 400, 'transaction_id'),
        ('metadata not strings', json.dumps({**g(), 'metadata': {'card': 5}}), 400, 'metadata.card'),
        ('metadata not an object', json.dumps({**g(), 'metadata': ['a']}), 400, 'metadata'),
        ('metadata over 2 KB', json.dumps({**g(), 'metadata': {f'k{i}': 'v' * 400 for i in range(6)}}), 400, 'body'),
        ('oversize single body', json.dumps({**g(), 'metadata': {'pad': 'x' * 300_000}}), 413, None),
    ]

@pytest.mark.parametrize('name,raw,status,field', _bad_cases(), ids=[c[0] for c in _bad_cases()])
@pytest.mark.parametrize('fmt', ['rest', 'http'])
def test_bad_input(served, fmt, name, raw, status, field):
    e = with_body(load_event(f'{fmt}_score_legit'), raw)
    s, _, b = call(H.handler, e)
    assert s == status, (name, s, b)
    assert set(b) == {'error'} and b['error']['status'] == s and b['error']['message']
    if field: assert field in {x['field'] for x in b['error'].get('errors', [])} or field in b['error']['message'], b
    _no_leak(json.dumps(b))

def test_values_at_the_bound_score_with_finite_reasons(served):
    for sign in (1, -1):
        tx = {**_good(), 'Time': 1e12, 'Amount': 1e12, **{f'V{i}': sign * (-1) ** i * 1e12 for i in range(1, 29)}}
        s, _, b = call(H.handler, with_body(load_event('rest_score_legit'), tx, tid=f'edge{sign}'))
        assert s == 200, b
        assert 0 <= b['fraud_probability'] <= 1 and b['reasons'] and all(math.isfinite(r['contribution']) for r in b['reasons']), b

def test_invalid_base64_and_unsupported_type(served):
    e = load_event('rest_score_legit'); e['body'] = '!!!not-base64!!!'
    s, _, b = call(H.handler, e)
    assert s == 400 and 'base64' in b['error']['message']
    e = with_body(load_event('rest_score_legit'), event_body(load_event('rest_score_legit')), b64=False, tid='ct-xml')
    e['headers']['Content-Type'] = 'application/xml'
    s, _, b = call(H.handler, e)
    assert 400 <= s < 500, b
    _no_leak(json.dumps(b))

@pytest.mark.parametrize('fmt', ['rest', 'http'])
def test_unknown_route_and_wrong_method(served, fmt):
    e = load_event(f'{fmt}_score_legit')
    s, _, b = call(H.handler, with_route(e, 'POST', '/nope'))
    assert s == 404 and b['error']['code'] == 'not_found'
    s, h, b = call(H.handler, with_route(e, 'GET', '/score'))
    assert s == 405 and h['allow'] == 'POST' and b['error']['code'] == 'method_not_allowed'
    s, h, b = call(H.handler, with_route(load_event(f'{fmt}_health'), 'DELETE', '/health'))
    assert s == 405 and h['allow'] == 'GET'

# ---------------------------------------------------------------- idempotency and alerts

def test_idempotent_repeat_and_conflict(served):
    e = load_event('rest_score_fraud'); body = {**event_body(e), 'transaction_id': 'idem-1'}
    s1, _, b1 = call(H.handler, with_body(e, body))
    s2, _, b2 = call(H.handler, with_body(e, body))
    assert s1 == s2 == 200 and b1['decision'] == b2['decision'] == 'block'
    assert b2['idempotent_replay'] and not b1['idempotent_replay'] and b1['fraud_probability'] == b2['fraud_probability']
    assert _alerts_for(served['tmp'], 'idem-1') == 1
    s3, _, b3 = call(H.handler, with_body(e, {**body, 'Amount': body['Amount'] + 1}))
    assert s3 == 409 and b3['error']['code'] == 'conflict' and 'decision' not in json.dumps(b3).replace('"code"', '')
    assert _alerts_for(served['tmp'], 'idem-1') == 1

def test_alert_carries_metadata(served):
    e = load_event('http_score_fraud'); body = {**event_body(e), 'transaction_id': 'meta-1'}
    s, _, b = call(H.handler, with_body(e, body))
    assert s == 200 and b['decision'] == 'block'
    with sqlite3.connect(served['tmp']/'state.db') as c:
        alert = json.loads(c.execute("select alert_json from alerts where transaction_id = 'meta-1'").fetchone()[0])
    assert alert['metadata'] == body['metadata'] and alert['model_version'] == served['version'] and alert['reasons']

# ---------------------------------------------------------------- batch

def test_batch(served):
    e = with_route(load_event('rest_score_legit'), 'POST', '/score/batch')
    legit, fraud = event_body(load_event('rest_score_legit')), event_body(load_event('rest_score_fraud'))
    call(H.handler, with_body(load_event('rest_score_legit'), {**legit, 'transaction_id': 'batch-dup'}))
    txs = [{**legit, 'transaction_id': 'batch-a'}, {**fraud, 'transaction_id': 'batch-b'}, {**fraud, 'transaction_id': 'batch-dup'}]
    s, _, b = call(H.handler, with_body(e, {'transactions': txs}))
    assert s == 200, b
    r = {x['transaction_id']: x for x in b['results']}
    assert r['batch-a']['result']['decision'] == 'approve' and r['batch-b']['result']['decision'] == 'block'
    assert r['batch-dup']['status'] == 409 and r['batch-dup']['error']['code'] == 'conflict'
    s, _, b = call(H.handler, with_body(e, {'transactions': []}))
    assert s == 400
    s, _, b = call(H.handler, with_body(e, {'transactions': [{**legit, 'transaction_id': f'lim-{i}'} for i in range(1001)]}))
    assert s == 400 and b['error']['code'] == 'batch_too_large'
    s, _, b = call(H.handler, with_body(e, {'transactions': [{**legit, 'transaction_id': 'big', 'metadata': {'p': 'x' * 500}}] * 12_000}))
    assert s == 413

# ---------------------------------------------------------------- health, model, openapi

def test_health_model_openapi(served):
    s, _, b = call(H.handler, load_event('rest_health'))
    assert s == 200 and b['status'] == 'ok' and b['model_version'] == served['version']
    s, _, b = call(H.handler, with_route(load_event('http_health'), 'GET', '/model'))
    assert s == 200 and b['model_version'] == served['version'] and b['thresholds'] == {'review': 0.5, 'block': 0.9}
    assert b['metrics'] and b['loaded_at']
    s, _, b = call(H.handler, with_route(load_event('rest_health'), 'GET', '/openapi.json'))
    assert s == 200 and b['openapi'].startswith('3.') and {'/score', '/score/batch', '/health', '/model'} <= set(b['paths'])
    req = json.dumps(b['components']['schemas'])
    assert 'transaction_id' in req and 'V28' in req and 'x-api-key' in json.dumps(b)

# ---------------------------------------------------------------- model lifecycle

def test_new_champion_is_picked_up_without_failed_requests(tmp_path):
    store = open_store(tmp_path/'store')
    v1 = store.publish('fraud', make_bundle(tmp_path/'b1'), promote=True)['version']
    H.init(local_env(tmp_path, tmp_path/'store', FRAUD_LAMBDA_REFRESH_SECONDS=0))
    e = load_event('rest_score_legit'); body = event_body(e)
    s, _, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'swap-1'}))
    assert s == 200 and b['model_version'] == v1
    v2 = store.publish('fraud', make_bundle(tmp_path/'b2', seed=1), promote=True)['version']
    s, _, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'swap-2'}))
    assert s == 200 and b['model_version'] == v2

def test_store_unreachable_at_cold_start_then_recovers(tmp_path):
    H.init(local_env(tmp_path, tmp_path/'store', FRAUD_LAMBDA_LOAD_RETRY_SECONDS=0))
    e = load_event('rest_score_legit'); body = event_body(e)
    s, h, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'cold-1'}))
    assert s == 503 and b['error']['code'] == 'model_unavailable' and h['retry-after']
    s, _, b = call(H.handler, load_event('rest_health'))
    assert s == 503 and b['status'] == 'unavailable' and 'does not exist' in b['reason']
    _no_leak(json.dumps(b))
    open_store(tmp_path/'store').publish('fraud', make_bundle(tmp_path/'b1'), promote=True)
    s, _, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'cold-2'}))
    assert s == 200 and b['decision'] == 'approve'

def test_corrupted_bundle_is_refused(tmp_path):
    store = open_store(tmp_path/'store')
    v = store.publish('fraud', make_bundle(tmp_path/'b1'), promote=True)['version']
    npz = tmp_path/'store'/'models'/'fraud'/v/'model.npz'
    blob = bytearray(npz.read_bytes()); blob[len(blob)//2] ^= 0xFF; npz.write_bytes(bytes(blob))
    H.init(local_env(tmp_path, tmp_path/'store'))
    s, _, b = call(H.handler, load_event('rest_health'))
    assert s == 503 and ('SHA-256' in b['reason'] or 'corrupt' in b['reason'].lower()), b
    s, _, b = call(H.handler, with_body(load_event('rest_score_legit'), event_body(load_event('rest_score_legit'))))
    assert s == 503

def test_bad_configuration_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match='FRAUD_LAMBDA_BATCH_LIMIT must be an integer'):
        H.init(local_env(tmp_path, tmp_path/'store', FRAUD_LAMBDA_BATCH_LIMIT='many'))
