"""Property-based fuzzing of the handler: hundreds of generated requests (valid, mutated and garbage), never a 5xx,
always a JSON answer without tracebacks or paths."""
import itertools, json, math
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from fraud_lambda import handler as H
from fraud_lambda.store import open_store
from handler_support import call, event_body, load_event, local_env, make_bundle, with_body, with_route

FEATURES = ['Time'] + [f'V{i}' for i in range(1, 29)] + ['Amount']
COUNT = {'requests': 0, 'status': {}}

@pytest.fixture(scope='module', autouse=True)
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('fuzz')
    open_store(tmp/'store').publish('fraud', make_bundle(tmp/'bundle'), promote=True)
    H.init(local_env(tmp, tmp/'store', FRAUD_LAMBDA_BATCH_LIMIT=20))
    yield
    print(f"\nfuzz: {COUNT['requests']} requests, statuses {dict(sorted(COUNT['status'].items()))}")
    assert COUNT['requests'] >= 500

junk = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30), st.text(max_size=20),
                 st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(min_value=-10**20, max_value=10**20),
                   st.floats(min_value=-1e12, max_value=1e12))   # the accepted range, edges included

@st.composite
def transactions(draw):
    "A transaction that is valid, slightly wrong, or thoroughly wrong"
    base = {'transaction_id': draw(st.one_of(st.from_regex(r'[A-Za-z0-9._:-]{1,40}', fullmatch=True), st.text(max_size=140))),
            **{f: draw(number) for f in FEATURES}}
    if draw(st.booleans()): base['Amount'] = abs(base['Amount']) if isinstance(base['Amount'], int) or math.isfinite(base['Amount']) else base['Amount']
    for f in draw(st.lists(st.sampled_from(FEATURES + ['transaction_id']), max_size=3)):
        mode = draw(st.sampled_from(['drop', 'junk']))
        if mode == 'drop': base.pop(f, None)
        else: base[f] = draw(junk)
    if draw(st.booleans()): base[draw(st.text(min_size=1, max_size=8))] = draw(junk)
    if draw(st.booleans()): base['metadata'] = draw(st.one_of(junk, st.dictionaries(st.text(max_size=10), st.text(max_size=300), max_size=8)))
    return base

def _check(status, body):
    COUNT['requests'] += 1; COUNT['status'][status] = COUNT['status'].get(status, 0) + 1
    assert status < 500, body
    assert isinstance(body, dict)
    text = json.dumps(body, allow_nan=False)   # strict JSON: no NaN or Infinity in any answer
    assert 'Traceback' not in text and '/work/' not in text and '/tmp/' not in text
    if status >= 400: assert set(body) == {'error'} and body['error']['status'] == status and body['error']['message']
    else: assert body.get('decision') in ('approve', 'review', 'block') or 'results' in body or 'model_version' in body or 'openapi' in body

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

@SETTINGS
@given(tx=transactions(), fmt=st.sampled_from(['rest', 'http']), b64=st.booleans())
def test_fuzz_score(tx, fmt, b64):
    raw = json.dumps(tx, allow_nan=True)
    _check(*[call(H.handler, with_body(load_event(f'{fmt}_score_legit'), raw, b64=b64))[i] for i in (0, 2)])

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)), fmt=st.sampled_from(['rest', 'http']),
       route=st.sampled_from([('POST', '/score'), ('POST', '/score/batch'), ('GET', '/score'), ('POST', '/health'), ('GET', '/model'), ('PATCH', '/x')]))
def test_fuzz_garbage_bodies_and_routes(raw, fmt, route):
    e = with_route(with_body(load_event(f'{fmt}_score_legit'), raw, b64=True), *route)
    s, _, b = call(H.handler, e)
    _check(s, b)

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(txs=st.lists(transactions(), max_size=25))
def test_fuzz_batch(txs):
    e = with_route(load_event('rest_score_legit'), 'POST', '/score/batch')
    s, _, b = call(H.handler, with_body(e, json.dumps({'transactions': txs}, allow_nan=True)))
    _check(s, b)

_IDS = itertools.count()   # a fresh id per example: the same id with another payload is a 409, tested elsewhere

@st.composite
def valid_transactions(draw):
    "A transaction the contract accepts: any in-range values, edges and extremes included"
    v = st.floats(min_value=-1e12, max_value=1e12)
    tx = {'transaction_id': f"{draw(st.from_regex(r'[A-Za-z0-9._:-]{1,40}', fullmatch=True))}.{next(_IDS)}", **{f: draw(v) for f in FEATURES}}
    tx['Amount'] = abs(tx['Amount'])
    return tx

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx=valid_transactions(), fmt=st.sampled_from(['rest', 'http']))
def test_fuzz_valid_transactions_always_score(tx, fmt):
    s, _, b = call(H.handler, with_body(load_event(f'{fmt}_score_legit'), json.dumps(tx)))
    assert s == 200, b
    _check(s, b)
    assert 0 <= b['fraud_probability'] <= 1 and all(math.isfinite(r['contribution']) for r in b['reasons']), b
