"""`make loop`: the fraud team's loop on the real data, on a laptop.

1. the champion in the local store scores the time-ordered holdout through the local API (`fraud-lambda replay --serve`):
   one decision record per answer in the home's decisions.db;
2. the holdout's frauds come back as chargebacks, and every flagged (review or block) transaction gets an analyst's
   verdict from the truth, as the review queue would give (`fraud-lambda labels push`); the rest stay unlabelled;
3. `fraud-lambda retrain --decisions --labels --base` builds the training frame from those records and labels, appended
   to the rows older than the holdout, keeps every fraud and a share of the legitimate rows, and ends in a gate decision.

The records are minutes old, so the label delay is 0 days here (a real deployment keeps the 30-day default: only then
is an unlabelled transaction trusted as legitimate). Everything lands under HOME (default .fraud-lambda/loop)."""
import argparse, csv, json, os, subprocess, sys
from datetime import datetime, timezone
from pathlib import Path


def _cli(*args, env=None, capture=False, worst:int=0) -> subprocess.CompletedProcess:
    "Run `fraud-lambda ARGS` with this interpreter; stop with its output when its exit code is above `worst`"
    cmd = [sys.executable, '-m', 'fraud_lambda.cli', *map(str, args)]
    print('$ fraud-lambda ' + ' '.join(map(str, args)), flush=True)
    r = subprocess.run(cmd, env=env, text=True, capture_output=capture)
    if r.returncode > worst:
        raise SystemExit(f"fraud-lambda {args[0]} failed with exit code {r.returncode}\n{r.stdout or ''}{r.stderr or ''}")
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='data/creditcard.csv')
    p.add_argument('--home', default='.fraud-lambda/loop', help='decisions.db, labels.db and state live here')
    p.add_argument('--store', default='.fraud-lambda/store', help='the store holding the champion')
    p.add_argument('--legit-fraction', type=float, default=0.25)
    p.add_argument('--limit', type=int, help='replay only the first LIMIT holdout rows')
    a = p.parse_args(argv)
    from fraud_lambda.data import LABEL, load_transactions, time_split
    home = Path(a.home).resolve()
    if (home/'decisions.db').exists(): raise SystemExit(f"{home} already holds a decision log: remove it or pass --home")
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, 'FRAUD_LAMBDA_HOME': str(home), 'FRAUD_LAMBDA_ALERT_SINKS': 'sqlite'}
    base, hold = time_split(load_transactions(a.data))
    if a.limit: hold = hold.iloc[:a.limit]
    base.to_csv(home/'base.csv', index=False)
    r = _cli('replay', '--serve', '--store', a.store, '--data', a.data, '--concurrency', 8, '--log', home/'serve.log',
             *(['--limit', a.limit] if a.limit else []), env=env, capture=True)
    summary = json.loads(r.stdout)
    print(f"replayed {summary['requests']:,} holdout transactions as run tag {summary['run_tag']}: "
          f"{summary['decisions']}", flush=True)
    now = datetime.now(timezone.utc).isoformat(timespec='seconds').replace('+00:00', 'Z')
    with open(home/'chargebacks.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['transaction_id', 'label', 'labelled_at', 'source', 'note'])
        for i, c in enumerate(hold[LABEL].to_numpy()):
            if c == 1: w.writerow([f"{summary['run_tag']}-{i}", 'fraud', now, 'chargeback', 'holdout Class = 1'])
    from fraud_lambda.decisionlog import read_decisions
    truth = {f"{summary['run_tag']}-{i}": int(c) for i, c in enumerate(hold[LABEL].to_numpy())}
    flagged = sorted({r['transaction_id'] for r in read_decisions(home/'decisions.db') if r['decision'] != 'approve'})
    with open(home/'verdicts.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['transaction_id', 'label', 'labelled_at', 'source', 'note'])
        for t in flagged: w.writerow([t, 'fraud' if truth[t] else 'legitimate', now, 'review', 'analyst verdict'])
    for name in ('chargebacks.csv', 'verdicts.csv'):
        _cli('labels', 'push', home/name, '--db', home/'labels.db', '--log', home/'decisions.db', env=env)
    r = _cli('retrain', '--decisions', home/'decisions.db', '--labels', home/'labels.db', '--base', home/'base.csv',
             '--label-delay-days', 0, '--legit-fraction', a.legit_fraction, '--store', a.store, env=env,
             worst=1)   # 0 promoted, 1 kept the champion: both are a gate decision
    return r.returncode


if __name__ == '__main__': sys.exit(main())
