"""The drift report end to end with papermill: synthetic defaults, and a given data file, traffic log, labels file and store champion."""
import json
from pathlib import Path

import pytest

from fraud_lambda.convert import save_bundle
from fraud_lambda.data import load_transactions, synthetic_transactions, time_split, xy
from fraud_lambda.drift import DRIFT_FEATURES, run_drift, simulate_labels, simulate_traffic
from fraud_lambda.store import open_store
from fraud_lambda.train import make_candidate

pytestmark = pytest.mark.timeout(300)


def check_report(out):
    doc = json.loads((out/'drift.json').read_text())
    assert set(doc['psi']) == set(DRIFT_FEATURES) and all(v >= 0 for v in doc['psi'].values())
    assert doc['shifted'] == [f for f, v in doc['psi'].items() if v > 0.2]
    for p in ('psi', 'score_distribution', 'top_drift_features'): assert (out/'plots'/f'{p}.png').stat().st_size > 5_000, p
    assert (out/'15_drift.ipynb').exists()
    return doc


def test_drift_report_synthetic_defaults(tmp_path):
    out = run_drift(out_dir=tmp_path/'drift', html=True, log=lambda *a: None)
    doc = check_report(out)
    assert (out/'15_drift.html').stat().st_size > 10_000
    assert doc['traffic']['simulated'] and doc['traffic']['rows'] == 4_000          # the holdout of 20,000 synthetic rows
    assert doc['feedback']['labelled_rows'] == 4_000 and doc['feedback']['labelled_frauds'] > 0
    assert 'hour_of_day' in doc['shifted'] and doc['score_psi'] is not None


def test_drift_report_given_traffic_labels_and_store_champion(tmp_path, monkeypatch):
    monkeypatch.setenv('FRAUD_LAMBDA_CACHE_DIR', str(tmp_path/'cache'))
    csv = tmp_path/'tx.csv'; synthetic_transactions(6_000, fraud_rate=0.01, seed=2).to_csv(csv, index=False)
    X, y = xy(time_split(load_transactions(csv))[0])
    bundle = save_bundle(make_candidate('logreg_balanced').fit(X, y), tmp_path/'bundle', {'name': 'fraud', 'thresholds': {'review': 0.3, 'block': 0.9}})
    (tmp_path/'store').mkdir()
    version = open_store(tmp_path/'store').publish('fraud', bundle, promote=True)['version']
    sim = simulate_traffic(csv, bundle, tmp_path/'traffic.db')
    simulate_labels(csv, tmp_path/'traffic.db', tmp_path/'labels.csv', approved_fraction=0.2)
    out = run_drift(csv, traffic_db=tmp_path/'traffic.db', labels_csv=tmp_path/'labels.csv', store_uri=str(tmp_path/'store'),
                    since=sim['since'] + 3 * 3600, reports_dir=tmp_path/'reports', run_id='drift-test', html=False, log=lambda *a: None)
    assert out == (tmp_path/'reports'/'drift-test').resolve()
    doc = check_report(out)
    assert doc['bundle']['version'] == version and not doc['traffic']['simulated'] and not (out/'simulated'/'traffic.db').exists()
    assert 0 < doc['traffic']['rows'] < sim['rows'] and doc['traffic']['same_model_rows'] == doc['traffic']['rows']
    assert doc['feedback']['labelled_rows'] < doc['traffic']['rows']              # 20% of approved legitimate rows labelled
    assert doc['feedback']['flagged']['labelled'] == doc['feedback']['decisions']['review'] + doc['feedback']['decisions']['block']
