"""fraud_lambda.retrain against an S3 model store on a real moto_server over HTTP (tests/conftest.py): the champion/challenger
gate, a failed notebook run, and two retrains racing for the champion pointer. Synthetic data, tiny report parameters."""
import json, subprocess, sys
from pathlib import Path

import boto3, numpy as np, pytest

from fraud_lambda.convert import save_bundle
from fraud_lambda.data import FEATURES, LABEL, load_transactions, synthetic_transactions, time_split, xy
from fraud_lambda.retrain import retrain
from fraud_lambda.store import POINTER, open_store
from fraud_lambda.train import make_candidate

pytestmark = pytest.mark.timeout(600)
BUCKET, PREFIX = 'fraud-retrain', 'prod'
SMALL = {'n_boot': 50, 'rf_trees': 5, 'gbm_trees': 40, 'html': False}
WEAK_FEATURES = ('V6', 'V18', 'V21')  # weakly shifted for frauds in the synthetic generator: a mediocre but real model


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "12,000 synthetic transactions (26 holdout frauds), and a copy whose training part has its V signs flipped (a broken export)"
    d = tmp_path_factory.mktemp('data')
    good = d/'transactions.csv'
    synthetic_transactions(12_000, fraud_rate=0.015, seed=1).to_csv(good, index=False)
    df = load_transactions(good).sort_values('Time', kind='stable').reset_index(drop=True)
    cut, v = int(len(df) * 0.8), [f'V{i}' for i in range(1, 29)]
    df.loc[:cut - 1, v] = -df.loc[:cut - 1, v]
    flipped = d/'flipped_training.csv'; df.to_csv(flipped, index=False)
    return {'good': good, 'flipped': flipped, 'dir': d}


def weak_bundle(csv, dest):
    "A logistic regression that sees only WEAK_FEATURES (the others zeroed in training), as a bundle"
    tr, _ = time_split(load_transactions(csv)); X, y = xy(tr); X = X.copy()
    X[:, [i for i, f in enumerate(FEATURES) if f not in WEAK_FEATURES + ('Time', 'Amount')]] = 0
    model = make_candidate('logreg_balanced').fit(X, y)
    return save_bundle(model, dest, {'name': 'fraud', 'thresholds': {'review': 0.5, 'block': 0.9}, 'report_run': 'weak-champion'})


@pytest.fixture()
def s3(aws_env, tmp_path, monkeypatch):
    "A boto3 client on the session moto_server with the bucket created; the model cache in tmp_path"
    monkeypatch.setenv('FRAUD_LAMBDA_CACHE_DIR', str(tmp_path/'cache'))
    c = boto3.client('s3'); c.create_bucket(Bucket=BUCKET)
    return c


@pytest.fixture()
def seeded_store(s3, data, tmp_path):
    "An S3 store whose champion is the weak model; returns (store, champion version)"
    store = open_store(f's3://{BUCKET}/{PREFIX}')
    r = store.publish('fraud', weak_bundle(data['good'], tmp_path/'weak'), promote=True, reason='test: weak champion')
    return store, r['version']


def pointer(s3):
    "champion.json read straight from S3"
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f'{PREFIX}/models/fraud/{POINTER}')['Body'].read())


def retrain_records(store):
    return [r for r in store.read_log('fraud') if r.get('event') == 'retrain']


def test_worse_challenger_kept_better_promoted(seeded_store, s3, data, tmp_path):
    store, weak = seeded_store
    worse = retrain(data['flipped'], store.uri, tmp_path/'reports', n_boot=200, report_params=SMALL, run_id='run-worse')
    assert (worse.decision, worse.exit_code, worse.champion_version) == ('kept', 1, weak), worse.reason
    assert 'AP failed' in worse.reason and worse.differences['average_precision']['ci95'][1] < -0.02
    assert pointer(s3)['version'] == weak                                   # unchanged, seen in S3 itself
    assert worse.challenger_version in {v['version'] for v in store.list_versions('fraud')}  # published, not promoted

    better = retrain(data['good'], store.uri, tmp_path/'reports', n_boot=200, report_params=SMALL, run_id='run-better')
    assert (better.decision, better.exit_code, better.champion_version) == ('promoted', 0, weak), better.reason
    for m in ('average_precision', 'recall_at_fpr_1pct'): assert better.differences[m]['ci95'][0] > -0.02, better.differences
    ptr = pointer(s3)
    assert (ptr['version'], ptr['previous']) == (better.challenger_version, weak)

    log = retrain_records(store)
    assert [(r['run_id'], r['decision']) for r in log] == [('run-worse', 'kept'), ('run-better', 'promoted')]
    for r, chal in zip(log, (worse, better)):
        assert r['challenger']['version'] == chal.challenger_version and r['champion']['version'] == weak
        for who in ('challenger', 'champion'):
            assert set(r[who]['metrics']) == {'average_precision', 'recall_at_fpr_1pct', 'roc_auc'}
            for m in r[who]['metrics'].values(): assert len(m['ci95']) == 2
        assert r['margin'] == 0.02 and r['data']['holdout']['frauds'] >= 5 and len(r['data']['sha256']) == 64
        assert r['timings_s']['report'] > 0 and r['timings_s']['total'] >= r['timings_s']['report']
    assert log[0]['data']['sha256'] != log[1]['data']['sha256']
    run = tmp_path/'reports'/'run-better'
    assert json.loads((run/'retrain.json').read_text())['decision'] == 'promoted'
    assert (run/'retrain.md').read_text().startswith('# Retrain run-better: promoted')


def test_failed_notebook_publishes_nothing(seeded_store, s3, data, tmp_path):
    store, weak = seeded_store
    before = [v['version'] for v in store.list_versions('fraud')]
    r = retrain(data['good'], store.uri, tmp_path/'reports', n_boot=50, report_params={**SMALL, 'rf_trees': 0}, run_id='run-bad')
    assert (r.decision, r.exit_code, r.challenger_version) == ('failed', 2, None)
    assert r.reason.startswith('ReportError: 05_train.ipynb failed in cell') and "'n_estimators' parameter" in r.reason, r.reason
    executed = tmp_path/'reports'/'run-bad'/'05_train.ipynb'
    assert executed.exists() and "'n_estimators' parameter" in executed.read_text()     # the traceback is kept for a human
    assert [v['version'] for v in store.list_versions('fraud', include_partial=True)] == before
    assert pointer(s3)['version'] == weak
    last = retrain_records(store)[-1]
    assert (last['run_id'], last['decision'], last['exit_code']) == ('run-bad', 'failed', 2) and 'traceback' in last
    assert json.loads((tmp_path/'reports'/'run-bad'/'retrain.json').read_text())['decision'] == 'failed'


def test_concurrent_retrains_one_promotion(seeded_store, s3, data, tmp_path):
    store, weak = seeded_store
    code = 'import sys; from fraud_lambda.retrain import main; sys.exit(main(sys.argv[1:]))'
    procs = {rid: subprocess.Popen([sys.executable, '-c', code, '--data', str(data['good']), '--store', store.uri, '--reports-dir', str(tmp_path/'reports'),
                                    '--run-id', rid, '--n-boot', '50', '--rf-trees', '5', '--gbm-trees', '40', '--no-html'],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rid in ('run-a', 'run-b')}
    out = {}
    for rid, p in procs.items():
        stdout, stderr = p.communicate(timeout=500)
        out[rid] = (p.returncode, json.loads(stdout.strip().splitlines()[-1]), stderr)
    codes = sorted(rc for rc, _, _ in out.values())
    assert codes == [0, 3], {k: (v[0], v[1], v[2][-1500:]) for k, v in out.items()}   # both beat the weak champion: the loser can only conflict
    winner = next(doc for rc, doc, _ in out.values() if rc == 0)
    loser = next(doc for rc, doc, _ in out.values() if rc != 0)
    assert winner['champion'] == loser['champion'] == weak                    # both started from the same pointer
    ptr = pointer(s3)
    assert (ptr['version'], ptr['previous']) == (winner['challenger'], weak)   # exactly the winner's promotion, over the weak champion
    assert store.champion('fraud')['version'] == winner['challenger']
    promotes = [r for r in store.read_log('fraud') if r.get('event') == 'promote']
    assert [r['version'] for r in promotes] == [weak, winner['challenger']]    # one promotion landed, nothing overwritten
    log = {r['run_id']: r for r in retrain_records(store)}
    assert (log[winner['run_id']]['decision'], log[loser['run_id']]['decision']) == ('promoted', 'conflict')
    assert 'the champion changed while this retrain ran' in log[loser['run_id']]['reason']
    assert loser['challenger'] in {v['version'] for v in store.list_versions('fraud')} and loser['challenger'] != ptr['version']
