"""A running `fraud-lambda serve` picks up a promoted policy with no restart and no failed request; a bad version
behind the pointer keeps the last good policy live and /health says so."""
import http.client, json, os, socket, subprocess, sys, threading, time
from pathlib import Path

import pytest

from fraud_lambda.policy import read_policy
from fraud_lambda.policystore import open_policy_store
from fraud_lambda.store import open_store
from handler_support import event_body, load_event, local_env, make_bundle

pytestmark = pytest.mark.timeout(120)
EXAMPLES = Path(__file__).resolve().parents[1]/'policies'/'examples'


def _port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _call(port, method, path, body=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    c.request(method, path, json.dumps(body) if body else None,
              {'Content-Type': 'application/json', 'x-api-key': 'k'})
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b'null')
    c.close()
    return out


@pytest.fixture()
def served(tmp_path):
    store = tmp_path/'store'
    open_store(store).publish('fraud', make_bundle(tmp_path/'bundle'), promote=True)
    port = _port()
    env = {**os.environ, **local_env(tmp_path, store, FRAUD_LAMBDA_REFRESH_SECONDS=1, FRAUD_LAMBDA_API_KEYS='k')}
    exe = Path(sys.executable).with_name('fraud-lambda')
    proc = subprocess.Popen([str(exe), 'serve', '--port', str(port), '--store', str(store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if _call(port, 'GET', '/health')[0] == 200: break
        except OSError: time.sleep(0.2)
    else: pytest.fail('fraud-lambda serve did not start')
    yield port, store
    proc.terminate()
    proc.wait(timeout=10)


def test_promoted_policy_goes_live_without_restart_or_failed_request(served):
    port, store = served
    legit = {**event_body(load_event('rest_score_legit')), 'metadata': {'card_id': 'card-0666'}}
    statuses, answers, stop = [], [], threading.Event()
    def traffic():
        i = 0
        while not stop.is_set():
            s, b = _call(port, 'POST', '/score', {**legit, 'transaction_id': f'hot-{i}'})
            statuses.append(s)
            answers.append(b)
            i += 1
    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        before = answers[-1]
        assert (before['decision'], before['decision_source'], before['policy_version']) == ('approve', 'model', None)
        ps = open_policy_store(store)
        v1 = ps.push('fraud', read_policy(EXAMPLES/'deny_list.json'), actor='analyst')['version']
        ps.promote('fraud', v1, actor='approver')
        deadline = time.time() + 15
        while time.time() < deadline and answers[-1].get('policy_version') != v1: time.sleep(0.1)
        after = answers[-1]
        assert (after['decision'], after['model_decision'], after['decision_source'], after['rules_hit']) == (
            'block', 'approve', 'list:deny_cards', ['deny-stolen-cards']), after
        print('\nrule changed the decision:', json.dumps(after))
        # a version that fails at load: the last good policy stays live, /health says why
        time.sleep(1.1)
        v2 = ps.push('fraud', read_policy(EXAMPLES/'night_high_amount.json'), actor='analyst')['version']
        ps.promote('fraud', v2, actor='approver')
        f = store/'policies'/'fraud'/v2/'policy.json'
        f.write_text(f.read_text().replace('"review"', '"deny"'))
        deadline = time.time() + 15
        health = None
        while time.time() < deadline:
            health = _call(port, 'GET', '/health')[1]
            if health.get('policy_error'): break
            time.sleep(0.1)
        assert health['status'] == 'ok' and health['policy_version'] == v1, health
        assert health['policy_error'].startswith(f'policy {v2} not loaded') and f'serving {v1}' in health['policy_error']
        assert answers[-1]['policy_version'] == v1 and answers[-1]['decision'] == 'block'
    finally:
        stop.set()
        t.join()
    assert len(statuses) > 20 and set(statuses) == {200}, (len(statuses), set(statuses))


def test_shadow_rules_never_change_the_response_and_land_in_the_record(tmp_path):
    "In-process handler: an active rule raises the decision (alert carries the policy), a shadow rule only records"
    import sqlite3
    from fraud_lambda import handler as H
    from fraud_lambda.decisionlog import read_decisions
    from handler_support import call, with_body
    store = open_store(tmp_path/'store')
    store.publish('fraud', make_bundle(tmp_path/'bundle'), promote=True)
    ps = open_policy_store(tmp_path/'store')
    v = ps.push('fraud', read_policy(EXAMPLES/'sample_backtest.json'), actor='analyst')['version']
    ps.promote('fraud', v, actor='approver')
    svc = H.init(local_env(tmp_path, tmp_path/'store'))
    assert svc.holder.policy.version == v, svc.holder.policy_error
    e = load_event('rest_score_legit')
    night = {**event_body(e), 'Time': 3 * 3600.0, 'Amount': 700.0}     # the shadow rule's case, not the active one's
    s, _, b = call(H.handler, with_body(e, night, tid='shadow-1'))
    assert s == 200 and (b['decision'], b['decision_source'], b['rules_hit']) == ('approve', 'model', []), b
    assert 'shadow' not in b
    big = {**event_body(e), 'Time': 3 * 3600.0, 'Amount': 1000.0}      # night-high-amount (active) fires
    s, _, b2 = call(H.handler, with_body(e, big, tid='shadow-2'))
    assert (b2['decision'], b2['model_decision'], b2['decision_source']) == ('review', 'approve',
                                                                              'rule:night-high-amount'), b2
    recs = {r['transaction_id']: r for r in read_decisions(tmp_path/'decisions.db')}
    assert recs['shadow-1']['decision'] == 'approve'
    assert recs['shadow-1']['policy']['shadow'] == {'rules_hit': ['shadow-mid-amount-night'], 'decision': 'review'}
    assert recs['shadow-2']['policy']['rules_hit'] == ['night-high-amount'] and recs['shadow-2']['decision'] == 'review'
    with sqlite3.connect(tmp_path/'state.db') as c:
        (alert,), = c.execute("select alert_json from alerts where transaction_id = 'shadow-2'").fetchall()
    assert json.loads(alert)['policy'] == {'policy_version': v, 'rules_hit': ['night-high-amount'],
                                           'decision_source': 'rule:night-high-amount'}


def test_shadow_model_scores_beside_the_champion_and_only_the_record_sees_it(tmp_path):
    "A policy naming a shadow_model: the challenger scores each request; the response is the champion's"
    from fraud_lambda import handler as H
    from fraud_lambda.decisionlog import read_decisions
    from fraud_lambda.shadow import challenger_summary
    from handler_support import call, with_body
    store = open_store(tmp_path/'store')
    champion = store.publish('fraud', make_bundle(tmp_path/'b1'), promote=True)['version']
    challenger = store.publish('fraud', make_bundle(tmp_path/'b2', seed=1))['version']
    doc = {**read_policy(EXAMPLES/'deny_list.json'), 'shadow_model': challenger}
    ps = open_policy_store(tmp_path/'store')
    ps.promote('fraud', ps.push('fraud', doc, actor='analyst')['version'], actor='approver')
    svc = H.init(local_env(tmp_path, tmp_path/'store'))
    assert svc.holder.challenger.version == challenger and svc.holder.policy_error is None
    e = load_event('rest_score_fraud')
    s, _, b = call(H.handler, with_body(e, event_body(e), tid='ch-1'))
    assert s == 200 and b['model_version'] == champion and 'shadow' not in b, b
    rec, = [r for r in read_decisions(tmp_path/'decisions.db') if r['transaction_id'] == 'ch-1']
    m = rec['policy']['shadow']['model']
    assert m['model_version'] == challenger and m['decision'] in ('approve', 'review', 'block'), m
    assert challenger_summary([rec])[challenger]['records'] == 1
    # a shadow model that cannot be pulled: the policy stays live, /health says why
    ps.promote('fraud', ps.push('fraud', {**doc, 'shadow_model': 'no-such-version'}, actor='a')['version'], actor='b')
    svc.holder.refresh_policy()
    assert svc.holder.challenger is None and svc.holder.policy is not None
    assert svc.holder.policy_error.startswith('shadow model no-such-version not loaded'), svc.holder.policy_error
