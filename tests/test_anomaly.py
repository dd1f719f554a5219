"""The anomaly score through the Lambda handler: a bundle with a detector answers `anomaly_score` in [0, 1] in every
200 response (single, batch, replay); a bundle without one answers null; the routing policy, when the bundle enables
it, turns an approval with a high anomaly score into a review."""
import numpy as np
import pytest
from fraud_lambda import handler as H
from fraud_lambda.store import open_store
from handler_support import FEATURES, call, event_body, load_event, local_env, make_bundle, train_demo_model, with_body, with_route

POLICY_AT = 0.99

@pytest.fixture(scope='module')
def data():
    from fraud_lambda.data import synthetic_transactions, time_split, xy
    tr, ho = time_split(synthetic_transactions(8000, fraud_rate=0.02, seed=0))
    return xy(tr), xy(ho)

def _anomaly_bundle(path, data, policy=None):
    "The handler tests' demo model with an isolation forest fitted on the legitimate training rows"
    from fraud_lambda.anomaly import fit_detector, calibration_table, unusualness
    from fraud_lambda.convert import save_bundle, export_anomaly
    (Xtr, ytr), _ = data
    det = fit_detector('iforest_256', Xtr[ytr == 0], seed=0)
    levels, quantiles = calibration_table(unusualness(det, Xtr[ytr == 0]))
    return save_bundle(train_demo_model(), path, {'name': 'fraud', 'thresholds': {'review': 0.5, 'block': 0.9}},
                       anomaly=export_anomaly(det, quantiles, policy, name='iforest_256', levels=levels))

def _serve(tmp, bundle):
    "Publish `bundle` as champion in a fresh local store and (re)build the handler's service on it"
    store = open_store(tmp/'store')
    version = store.publish('fraud', bundle, promote=True)['version']
    svc = H.init(local_env(tmp, tmp/'store'))
    assert svc.holder.scorer is not None, svc.holder.error
    return version

def _tx(x, tid):
    return {'transaction_id': tid, **dict(zip(FEATURES, map(float, x)))}

def _score_all(prefix, rows):
    "POST /score for each row and /score/batch for all of them; return every 200 body"
    e = load_event('rest_score_legit'); bodies = []
    for i, x in enumerate(rows):
        s, _, b = call(H.handler, with_body(e, _tx(x, f'{prefix}-{i}')))
        assert s == 200, b
        bodies.append(b)
    s, _, b = call(H.handler, with_body(with_route(e, 'POST', '/score/batch'), {'transactions': [_tx(x, f'{prefix}-batch-{i}') for i, x in enumerate(rows)]}))
    assert s == 200, b
    assert all(r['status'] == 200 for r in b['results']), b
    bodies += [r['result'] for r in b['results']]
    s, _, b = call(H.handler, with_body(e, _tx(rows[0], f'{prefix}-0')))  # an idempotent replay answers the stored body
    assert s == 200 and b['idempotent_replay'], b
    return bodies + [b]

def test_anomaly_score_in_every_response(tmp_path, data):
    version = _serve(tmp_path, _anomaly_bundle(tmp_path/'bundle', data))
    rows = data[1][0][:40]
    fraud, legit = event_body(load_event('rest_score_fraud')), event_body(load_event('rest_score_legit'))
    bodies = _score_all('a', np.vstack([rows, [[fraud[f] for f in FEATURES], [legit[f] for f in FEATURES]]]))
    assert len(bodies) == 2 * 42 + 1
    for b in bodies:
        assert b['model_version'] == version
        assert isinstance(b['anomaly_score'], float) and 0.0 <= b['anomaly_score'] <= 1.0, b
    scores = [b['anomaly_score'] for b in bodies[:42]]
    assert len(set(scores)) > 30  # a real score per transaction, not a constant
    assert scores == [b['anomaly_score'] for b in bodies[42:84]]  # /score and /score/batch agree

def test_no_detector_means_null(tmp_path, data):
    _serve(tmp_path, make_bundle(tmp_path/'bundle'))
    for b in _score_all('n', data[1][0][:10]):
        assert 'anomaly_score' in b and b['anomaly_score'] is None, b

def test_routing_policy_through_the_handler(tmp_path, data):
    "With the policy on, an approval whose anomaly score is at or above the threshold comes back as a review (and the policy off leaves it approved)"
    from fraud_lambda.scorer import Scorer
    on = _anomaly_bundle(tmp_path/'on', data, {'route_to_review': True, 'threshold': POLICY_AT})
    sc = Scorer.from_path(on); X = data[1][0]
    d = sc.score_batch_detailed(X)
    routed = np.flatnonzero((d['fraud_probability'] < 0.5) & (d['anomaly_score'] >= POLICY_AT))
    kept = np.flatnonzero((d['fraud_probability'] < 0.5) & (d['anomaly_score'] < POLICY_AT))[:5]
    assert len(routed) >= 1
    _serve(tmp_path/'svc-on', on)
    e = load_event('rest_score_legit')
    for i in routed[:5]:
        s, _, b = call(H.handler, with_body(e, _tx(X[i], f'on-{i}')))
        assert s == 200 and b['decision'] == 'review' and b['anomaly_score'] >= POLICY_AT and b['fraud_probability'] < 0.5, b
    for i in kept:
        s, _, b = call(H.handler, with_body(e, _tx(X[i], f'on-{i}')))
        assert s == 200 and b['decision'] == 'approve', b
    _serve(tmp_path/'svc-off', _anomaly_bundle(tmp_path/'off', data))
    i = routed[0]
    s, _, b = call(H.handler, with_body(e, _tx(X[i], f'off-{i}')))
    assert s == 200 and b['decision'] == 'approve' and b['anomaly_score'] >= POLICY_AT, b

def test_scoring_with_a_detector_imports_numpy_only(tmp_path, data):
    "The anomaly path of the scorer (isolation forest and Mahalanobis) loads and scores in a fresh interpreter without scikit-learn, scipy, pandas or joblib"
    import json, subprocess, sys
    from fraud_lambda.anomaly import fit_detector, calibration_table, unusualness, raw_score
    from fraud_lambda.convert import save_bundle, export_anomaly
    (Xtr, ytr), (Xho, _) = data
    script = ("import json, sys; import numpy as np; from fraud_lambda.scorer import Scorer\n"
              "s = Scorer.from_path(sys.argv[1]); rows = np.array(json.loads(sys.argv[2]))\n"
              "one = s.score_one(rows[0].tolist()); raw, score = s.anomaly_batch(rows)\n"
              "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas', 'joblib', 'lightgbm', 'imblearn'})\n"
              "print(json.dumps({'heavy': heavy, 'one': one.anomaly_score, 'raw': raw.tolist(), 'score': score.tolist()}))")
    for name in ('iforest_256', 'mcd_0.99'):
        det = fit_detector(name, Xtr[ytr == 0], seed=0, mcd_rows=3000)
        levels, quantiles = calibration_table(unusualness(det, Xtr[ytr == 0]))
        path = save_bundle(train_demo_model(), tmp_path/name, {'thresholds': {'review': 0.5, 'block': 0.9}}, anomaly=export_anomaly(det, quantiles, name=name, levels=levels))
        r = subprocess.run([sys.executable, '-c', script, str(path), json.dumps(Xho[:20].tolist())], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out['heavy'] == [], f"scoring with {name} imported {out['heavy']}"
        sk = raw_score(det, Xho[:20])
        assert np.abs(np.array(out['raw']) - sk).max() <= 1e-9 * max(1.0, np.abs(sk).max())
        assert out['one'] == out['score'][0] and all(0 <= v <= 1 for v in out['score'])
