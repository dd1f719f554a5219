"batch_file bench on the real holdout x10 with an LGBM candidate fitted here on the real training split (the report run of the demo was still training)"
import json, os, sys, time, joblib
from pathlib import Path
from fraud_lambda.data import load_transactions, time_split, xy
from fraud_lambda.train import make_candidate
from fraud_lambda.convert import save_bundle
from fraud_lambda.bench_batch import batch_file_bench, batch_markdown
from fraud_lambda.bench import _section
from fraud_lambda.timing import machine_info
work = Path('/tmp/eco/batchbench'); work.mkdir(parents=True, exist_ok=True)
df = load_transactions('data/creditcard.csv')
tr, ho = time_split(df)
Xtr, ytr = xy(tr); Xho, yho = xy(ho)
t = time.time()
m = make_candidate('lgbm', gbm_trees=600, seed=0).fit(Xtr, ytr)
print('fit', round(time.time() - t, 1), flush=True)
joblib.dump(m, work/'chosen.joblib')
b = save_bundle(m, work/'bundle', {'name': 'fraud', 'thresholds': {'review': 0.5, 'block': 0.9}})
mach = machine_info()
s = batch_file_bench(b, work/'chosen.joblib', Xho, work/'w', times=10, repeats=3, data_label='real holdout')
label = 'lgbm (600 rounds) fitted by the bench script on the real training split (not a report run)'
doc = _section('reports/bench/results.json', 'batch_file', s, label, mach)
print(json.dumps(doc['batch_file'], indent=1))
print(batch_markdown(s))
