"""The serving path stays light: importing fraud_lambda.scorer and fraud_lambda.bundle, loading a bundle and scoring it
in a fresh interpreter must not import scikit-learn, scipy, pandas, LightGBM or joblib (the Lambda package has none of them)."""
import json, subprocess, sys
import numpy as np
import pytest
from fraud_lambda.data import synthetic_transactions, time_split, xy, FEATURES

HEAVY = ('sklearn', 'scipy', 'pandas', 'lightgbm', 'joblib', 'imblearn')

SCRIPT = """
import json, sys
import numpy as np
import fraud_lambda.bundle
from fraud_lambda.scorer import Scorer, decision_for
s = Scorer.from_path(sys.argv[1])
rows = np.array(json.loads(sys.argv[2]))
one = s.score_one(dict(zip(s.manifest['features'], rows[0].tolist()), transaction_id='t-1'))
batch = s.score_batch(rows)
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[3])))
print(json.dumps({'heavy': heavy, 'one': one.fraud_probability, 'batch': batch.tolist(),
                  'decisions': decision_for(batch, s.thresholds).tolist(), 'reasons': one.reasons}))
"""

@pytest.fixture(scope='module')
def data():
    train, hold = time_split(synthetic_transactions(6000, fraud_rate=0.02, seed=1))
    return xy(train), xy(hold)

def _models(Xtr, ytr):
    "One model per code path of the scorer: linear, boosted trees, forest on float32, and the wrappers"
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.linear_model import LogisticRegression
    from sklearn.ensemble import RandomForestClassifier
    from lightgbm import LGBMClassifier
    from imblearn.pipeline import Pipeline as ImbPipeline
    from imblearn.over_sampling import SMOTE
    from fraud_lambda.features import Preprocessor, MarginBlend, prior_correction
    lr = Pipeline([('prep', Preprocessor()), ('clf', LogisticRegression(class_weight='balanced', max_iter=2000))]).fit(Xtr, ytr)
    gbm = Pipeline([('prep', Preprocessor(standardize=False)), ('clf', LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1))]).fit(Xtr, ytr)
    seed = ImbPipeline([('scale', StandardScaler()), ('smote', SMOTE(random_state=0)), ('clf', RandomForestClassifier(10, random_state=0))]).fit(Xtr, ytr)
    blend = MarginBlend([('lr', prior_correction(lr, 49.0)), ('gbm', gbm)], weights=[0.5, 0.5]); blend.classes_ = np.array([0, 1])
    return {'logistic_regression': lr, 'lightgbm': gbm, 'seed_smote_rf': seed, 'margin_blend': blend}

@pytest.fixture(scope='module')
def bundles(data, tmp_path_factory):
    from fraud_lambda.convert import save_bundle
    (Xtr, ytr), (Xho, _) = data
    out = {}
    for name, model in _models(Xtr, ytr).items():
        p = model.predict_proba(Xho)[:, 1]
        th = {'review': float(np.quantile(p, 0.9)), 'block': float(np.quantile(p, 0.99))}
        out[name] = (save_bundle(model, tmp_path_factory.mktemp('b')/name, {'thresholds': th}), model)
    return out

@pytest.mark.parametrize('name', ['logistic_regression', 'lightgbm', 'seed_smote_rf', 'margin_blend'])
def test_scoring_imports_numpy_only(bundles, data, name):
    path, model = bundles[name]
    rows = data[1][0][:20]
    r = subprocess.run([sys.executable, '-c', SCRIPT, str(path), json.dumps(rows.tolist()), json.dumps(HEAVY)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['heavy'] == [], f"scoring {name} imported {out['heavy']}"
    sk = model.predict_proba(rows)[:, 1]
    assert np.abs(np.array(out['batch']) - sk).max() <= 1e-9
    assert abs(out['one'] - sk[0]) <= 1e-9
    assert all(set(x) == {'feature', 'contribution'} and x['feature'] in FEATURES for x in out['reasons'])

def test_package_import_is_light():
    r = subprocess.run([sys.executable, '-c', 'import sys, json, fraud_lambda, fraud_lambda.preprocess, fraud_lambda.bundle, fraud_lambda.scorer; '
                        f'print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({list(HEAVY)!r}))))'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
