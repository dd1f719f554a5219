"""The warm-path changes of issue 17 against the code they replaced, interleaved in one process (the machine is shared,
so only a same-process A/B is readable): the trees' single-row path (one-lookup lowest clear bit, np.take gather, a BLAS
product for the reason sum) and the request models' short repr, toggled in alternating blocks.

    .venv/bin/python scripts/warm_path_ab.py --run reports/run-... [--blocks 40]

Prints p50/p99 of the trees' explain, Scorer.score_one and the whole handler (SQLite idempotency and decision log)."""
import argparse, contextlib, io, json, tempfile, time, uuid
from pathlib import Path
import numpy as np
from pydantic import BaseModel
from fraud_lambda import handler as H, routes, trees as T
from fraud_lambda.api import _Base
from fraud_lambda.bench_handler import local_env, transaction_bodies
from fraud_lambda.bench_scoring import holdout_rows
from fraud_lambda.deploy import publish_champion
from fraud_lambda.schema import FEATURES
from fraud_lambda.scorer import Scorer, _row
from fraud_lambda.server import LocalContext, make_event
from fraud_lambda.trees import _lowest_clear


def _old_leaves_quick(self, x):
    "The single-row leaf lookup as it was: fancy-index gather, four-op lowest clear bit"
    q = self._quick
    return q['base'] + _lowest_clear(np.bitwise_or.reduce((x[q['feat']] > q['thr']) * q['bits'], axis=0), q)


def _old_explain(self, z):
    "The quick-mode explain as it was: reasons summed with .sum(0) (sum aggregate only, as the blend's LightGBM)"
    q = self._quick
    leaves = self._leaves_quick(z)
    values, contrib = q['leaf_values'][leaves], q['leaf_contrib'].take(leaves, axis=0).sum(0)
    return float(np.concatenate(([self.baseline], values)).cumsum()[-1]), contrib, self.bias, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', required=True, type=Path)
    ap.add_argument('--blocks', type=int, default=40)
    a = ap.parse_args()
    new = (T._Trees.explain, T._Trees._leaves_quick, _Base.__repr_args__)
    old = (_old_explain, _old_leaves_quick, BaseModel.__repr_args__)
    def use(v): T._Trees.explain, T._Trees._leaves_quick, _Base.__repr_args__ = v
    bundle = a.run/'models'/'bundle'
    X = holdout_rows(json.loads((a.run/'metrics.json').read_text())['data']['source'])[:5000]
    txs = [dict(zip(FEATURES, r.tolist())) for r in X]
    sc = Scorer.from_path(bundle)
    term = next(m for m in sc._root.inner.members if isinstance(getattr(m, 'clf', None), T._Trees))
    env = local_env(Path(tempfile.mkdtemp(prefix='fraud-lambda-warm-ab-')))
    publish_champion(bundle, env['FRAUD_LAMBDA_STORE_URI'], echo=None)
    routes.METRICS_ON = False
    H.init(env)
    evs = iter([make_event('POST', '/score', {'Content-Type': 'application/json'}, b)
                for b in transaction_bodies(X, 'ab' + uuid.uuid4().hex[:8], a.blocks * 220 + 300)])
    ctx, res = LocalContext(), {k: {'explain': [], 'score_one': [], 'handler': []} for k in ('old', 'new')}
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(300): H.handler(next(evs), ctx)
        for blk in range(a.blocks):
            for k in (('old', 'new') if blk % 2 else ('new', 'old')):
                use(old if k == 'old' else new)
                for _ in range(10): H.handler(next(evs), ctx)
                for i in range(200):
                    tx = txs[(blk * 200 + i) % len(txs)]
                    z = sc._chains[term.chain].one(_row(tx))
                    t = time.perf_counter(); term.clf.explain(z); res[k]['explain'].append(time.perf_counter() - t)
                    t = time.perf_counter(); sc.score_one(tx); res[k]['score_one'].append(time.perf_counter() - t)
                for _ in range(100):
                    e = next(evs)
                    t = time.perf_counter(); H.handler(e, ctx); res[k]['handler'].append(time.perf_counter() - t)
    use(new)
    for what in ('explain', 'score_one', 'handler'):
        o, n = (np.asarray(res[k][what]) * 1e3 for k in ('old', 'new'))
        print(f"{what}: old p50 {np.median(o):.4f} / p99 {np.percentile(o, 99):.4f} ms, new p50 {np.median(n):.4f} / "
              f"p99 {np.percentile(n, 99):.4f} ms, p50 ratio old/new {np.median(o) / np.median(n):.2f}")


if __name__ == '__main__':
    main()
