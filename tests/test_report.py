"""The papermill report pipeline end to end on synthetic data: folders, HTML, PNGs and the metrics.json shape."""
import json, subprocess, sys
from pathlib import Path
import pytest

def test_report_on_synthetic_data(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'fraud_lambda.cli', 'report', '--synthetic', '--reports-dir', str(tmp_path),
                        '--run-id', 'run-test', '--n-boot', '50', '--rf-trees', '10', '--gbm-trees', '60'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'run-test'
    for nb in ('01_eda', '05_train', '06_thresholds'):
        assert (run/f'{nb}.ipynb').exists() and (run/f'{nb}.html').stat().st_size > 10_000
    plots = {p.stem for p in (run/'plots').glob('*.png')}
    assert {'class_balance', 'fraud_rate_by_hour', 'pr_roc_curves', 'calibration', 'feature_importance', 'cost_vs_threshold', 'confusion_holdout'} <= plots
    m = json.loads((run/'metrics.json').read_text())
    assert m['run_id'] == 'run-test' and m['chosen_model'] in m['models']
    for name in ('seed_smote_rf', 'logreg_balanced', 'lgbm', 'chosen'):
        h = m['models'][name]['holdout']
        for k in ('average_precision', 'roc_auc', 'recall_at_fpr_1pct', 'recall_at_fpr_0_1pct', 'recall_at_precision_90'):
            lo, hi = h[k]['ci95']
            assert 0 <= lo <= h[k]['value'] <= hi <= 1, (name, k, h[k])
    assert 0 <= m['thresholds']['review'] <= m['thresholds']['block']
    op = m['operating_point']
    assert op['tp'] + op['fp'] + op['fn'] + op['tn'] == 6000  # 20% of the 30,000 synthetic rows
    assert {'eda', 'train', 'thresholds', 'html', 'total'} <= set(m['timings_s'])
    assert (run/'16_anomaly.html').stat().st_size > 10_000 and (run/'models'/'anomaly.joblib').exists() and 'anomaly_vs_classifier' in plots
    assert m['anomaly']['detector'] in m['anomaly']['candidates'] and 'quantiles' not in m['anomaly']['calibration'] and 'anomaly' in m['timings_s']
    from fraud_lambda.convert import bundle_from_run
    from fraud_lambda.bundle import load_bundle
    assert load_bundle(bundle_from_run(run)).manifest['anomaly']['name'] == m['anomaly']['detector']
    assert not (tmp_path/'latest').exists()  # synthetic runs never become the reference

def test_report_step_failure_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'fraud_lambda.cli', 'report', '--synthetic', '--reports-dir', str(tmp_path),
                        '--run-id', 'run-bad', '--rf-trees', '0', '--gbm-trees', '20'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('error: 05_train.ipynb failed in cell') and "'n_estimators' parameter" in last, r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    assert (tmp_path/'run-bad'/'05_train.ipynb').exists()  # kept for a human to read
    assert not (tmp_path/'run-bad'/'metrics.json').exists()
