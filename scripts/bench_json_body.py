"""Before/after of issue 16's changes to the hot path, timed interleaved in one run (fraud_lambda.timing) on the
handler bench's events: before = Powertools' `json.loads` and no Content-Type check in the precheck; after = the
handler as it is (`api.parse_json_body`, `handler._json_media_type`).
Usage: .venv/bin/python scripts/bench_json_body.py [n]  -> reports/bench/results.json under `json_body_parse`."""
import contextlib, json, os, sys, tempfile, uuid
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tests'))
from handler_support import make_bundle
from fraud_lambda.api import parse_json_body
from fraud_lambda.bench_handler import local_env, transaction_bodies
from fraud_lambda.data import synthetic_transactions, time_split, xy
from fraud_lambda.deploy import publish_champion
from fraud_lambda.server import LocalContext, make_event
from fraud_lambda.timing import interleaved_latencies, merge_into, summarize_ns

def main(n=3000, warmup=300):
    from fraud_lambda import handler as H, routes
    work = Path(tempfile.mkdtemp(prefix='fraud-lambda-json-bench-'))
    env = local_env(work)
    publish_champion(make_bundle(work/'bundle'), env['FRAUD_LAMBDA_STORE_URI'], echo=None)
    routes.METRICS_ON = False
    H.init(env)
    _, ho = time_split(synthetic_transactions(6000, fraud_rate=0.02, seed=3))
    X, _ = xy(ho)
    hdr = {'Content-Type': 'application/json'}
    tag, ctx, bad = 'jb' + uuid.uuid4().hex[:8], LocalContext(), []
    events = iter([make_event('POST', '/score', hdr, b) for b in transaction_bodies(X, tag, 3 * (n + warmup) + 400)])
    media_check = H._json_media_type
    def contender(deserializer, check):
        def call(_):
            H.rest_app._json_body_deserializer, H._json_media_type = deserializer, check
            r = H.handler(next(events), ctx)
            if r['statusCode'] != 200: bad.append(r)
        return call
    with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null):
        lat = interleaved_latencies({'before': contender(json.loads, lambda headers: True),
                                     'after': contender(parse_json_body, media_check)},
                                    [None], n, warmup)
    H.rest_app._json_body_deserializer, H._json_media_type = parse_json_body, media_check
    assert not bad, bad[:1]
    s = {k: summarize_ns(v) for k, v in lat.items()}
    out = {'json_body_parse': {
        'what': 'one /score call through fraud_lambda.handler.handler (REST event, local store, SQLite state); '
                'before: json.loads and no Content-Type check; after: api.parse_json_body and the 415 check',
        'n': n, 'before_p50_ms': s['before']['p50_ms'], 'after_p50_ms': s['after']['p50_ms'],
        'before_p99_ms': s['before']['p99_ms'], 'after_p99_ms': s['after']['p99_ms'],
        'ratio_p50_after_over_before': round(s['after']['p50_ms'] / s['before']['p50_ms'], 3),
        'script': 'scripts/bench_json_body.py'}}
    merge_into(ROOT/'reports'/'bench'/'results.json', out)
    print(json.dumps(out, indent=1))

if __name__ == '__main__': main(*map(int, sys.argv[1:]))
