"""Issue 12 on AWS stand-ins over real HTTP (moto_server): decision records from the handler's stdout lines through
CloudWatch Logs -> subscription filter -> Firehose -> S3, read back from the S3 hour layout; labels; a drift report and a
retrain from the S3 records ending in a gate decision; and the transport stopped for part of the run, then
`replay_decisions` from CloudWatch Logs: none lost, none doubled.

moto delivers log events to a Firehose subscription and Firehose writes them to S3 (without running the Lambda
processor, so the objects hold CloudWatch's gzip envelopes; the reader accepts both shapes, and the processor is checked
here against the very envelopes moto wrote)."""
import base64, gzip, hashlib, json, random, time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import boto3, pytest

from fraud_lambda import handler as H
from fraud_lambda.data import FEATURES, LABEL, synthetic_transactions, time_split
from fraud_lambda.decision_transport import FILTER_PATTERN, RECORD_KEY, firehose_transform, record_of_message
from fraud_lambda.decisions_s3 import iter_s3_decision_files, record_identity, replay_decisions
from fraud_lambda.store import open_store
from handler_support import Context, call, load_event, local_env, make_bundle, with_body

pytestmark = pytest.mark.timeout(900)
N_REQUESTS, N_REPEATS = 2000, 100          # 1,900 distinct holdout transactions and 100 client retries (5%)
BUCKET, GROUP, STREAM = 'fraud-decisions', '/aws/lambda/fraud-test-fraud', 'fraud-test-decisions'
SMALL = {'n_boot': 50, 'rf_trees': 5, 'gbm_trees': 40, 'html': False}


def _iso(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


@pytest.fixture(scope='module')
def traffic(tmp_path_factory):
    """2,000 requests through the handler (local store, no alert sinks): the responses, the stdout lines a Lambda would
    log, the holdout's labels and the base CSV. The lines are the handler's own `{"decision_record": ...}` prints
    (the decision log with FRAUD_LAMBDA_DECISION_LOG=stdout, the Lambda default), exactly one per request."""
    import contextlib, io
    tmp = tmp_path_factory.mktemp('decisions')
    df = synthetic_transactions(9500, fraud_rate=0.015, seed=1)
    base, hold = time_split(df)                               # 7,600 older rows, 1,900 holdout rows
    base.tail(3000).to_csv(tmp/'base.csv', index=False)      # the latest 3,000 older rows: enough, and quick to train on
    bundle = make_bundle(tmp/'bundle')
    manifest_sha = hashlib.sha256((Path(bundle)/'manifest.json').read_bytes()).hexdigest()
    store = open_store(str(tmp/'store'))
    store.ensure()
    version = store.publish('fraud', bundle, promote=True)['version']
    H.init(local_env(tmp, tmp/'store', FRAUD_LAMBDA_ALERT_SINKS='none', FRAUD_LAMBDA_DECISION_LOG='stdout'))
    rows = [{'transaction_id': f'tx-{i:05d}', **{f: float(r[f]) for f in FEATURES},
             'metadata': {'card_id': f'card-{i % 97}'}} for i, (_, r) in enumerate(hold.iterrows())]
    truth = {row['transaction_id']: int(c) for row, c in zip(rows, hold[LABEL])}
    rng = random.Random(7)
    order = list(range(len(rows)))
    repeats = sorted(rng.sample(range(len(rows)), N_REPEATS))
    for k, j in enumerate(repeats): order.insert(j + k + 1 + rng.randrange(5), j)   # a retry soon after the first call
    event = load_event('rest_score_legit')
    responses, lines, printed = [], [], 0
    for j in order[:N_REQUESTS]:
        ctx, out = Context(), io.StringIO()
        with contextlib.redirect_stdout(out):
            r = H.handler(with_body(event, rows[j]), ctx)
        scored_at = time.time()
        resp = json.loads(base64.b64decode(r['body']) if r.get('isBase64Encoded') else r['body'])
        assert r['statusCode'] == 200, resp
        own = [ln for ln in out.getvalue().splitlines() if record_of_message(ln)]
        assert len(own) == 1, f"request {len(responses)}: the handler printed {len(own)} decision records"
        printed += 1
        lines.append((scored_at, own[0]))
        responses.append(resp)
    assert {json.loads(m)[RECORD_KEY]['manifest_sha256'] for _, m in lines} == {manifest_sha}
    return {'tmp': tmp, 'responses': responses, 'lines': lines, 'truth': truth, 'bundle': bundle, 'version': version,
            'store': str(tmp/'store'), 'handler_printed': printed > 0}


def _transport(endpoint):
    "The stack's decision path on moto: log group and stream, bucket, Firehose to S3 under decisions/, subscription"
    logs, s3, fh = (boto3.client(s, endpoint_url=endpoint, region_name='us-east-1') for s in ('logs', 's3', 'firehose'))
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName='2026/12/02/[$LATEST]abc')
    s3.create_bucket(Bucket=BUCKET)
    arn = fh.create_delivery_stream(DeliveryStreamName=STREAM, DeliveryStreamType='DirectPut',
                                    ExtendedS3DestinationConfiguration={
                                        'BucketARN': f'arn:aws:s3:::{BUCKET}', 'Prefix': 'decisions/',
                                        'RoleARN': 'arn:aws:iam::123456789012:role/stream',
                                        'CompressionFormat': 'UNCOMPRESSED'})['DeliveryStreamARN']
    subscribe = lambda: logs.put_subscription_filter(logGroupName=GROUP, filterName='decision-records',
                                                     filterPattern=FILTER_PATTERN, destinationArn=arn,
                                                     roleArn='arn:aws:iam::123456789012:role/subscription')
    subscribe()
    return logs, s3, subscribe


def _ship(logs, lines, batch=50, between=None):
    "What Lambda's log agent does: the lines into the function's log stream, in batches, timestamps = scored_at"
    for i in range(0, len(lines), batch):
        if between: between(i)
        logs.put_log_events(logGroupName=GROUP, logStreamName='2026/12/02/[$LATEST]abc',
                            logEvents=[{'timestamp': int(t * 1000), 'message': m + '\n'} for t, m in lines[i:i + batch]])


def _check_exact(records, responses):
    "Exactly one record per response: count, replays and the count by decision"
    assert len(records) == len(responses) == N_REQUESTS
    assert len({record_identity(r) for r in records}) == N_REQUESTS                     # none doubled
    assert sum(r['idempotent_replay'] for r in records) == sum(r['idempotent_replay'] for r in responses) == N_REPEATS
    assert Counter(r['decision'] for r in records) == Counter(r['decision'] for r in responses)
    by_id = {(r['transaction_id'], r['idempotent_replay']): r for r in records}
    for resp in responses:
        rec = by_id[(resp['transaction_id'], resp['idempotent_replay'])]
        assert (rec['decision'], rec['fraud_probability'], rec['model_version']) == \
            (resp['decision'], resp['fraud_probability'], resp['model_version'])


def test_decisions_land_in_s3_then_labels_drift_and_retrain(traffic, aws_env, tmp_path):
    logs, s3, _ = _transport(aws_env.endpoint)
    _ship(logs, traffic['lines'])
    keys = [o['Key'] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix='decisions/')['Contents']]
    assert keys and all(len(k.split('/')) == 6 and k.split('/')[1].isdigit() for k in keys)   # decisions/YYYY/MM/DD/HH/name
    records = list(iter_s3_decision_files(f's3://{BUCKET}'))
    _check_exact(records, traffic['responses'])
    # the processor turns moto's CloudWatch envelopes into the same records, one JSON line each
    objs = [s3.get_object(Bucket=BUCKET, Key=k)['Body'].read() for k in keys]
    out = firehose_transform({'records': [{'recordId': str(i), 'data': base64.b64encode(o).decode()}
                                          for i, o in enumerate(objs)]})['records']
    assert {r['result'] for r in out} == {'Ok'}
    unwrapped = [json.loads(ln) for r in out for ln in base64.b64decode(r['data']).decode().splitlines()]
    assert unwrapped == records

    # labels: chargebacks for every fraud, review verdicts for the flagged legitimate ones, a superseded one
    truth, now = traffic['truth'], time.time()
    flagged = {r['transaction_id'] for r in records if r['decision'] != 'approve'}
    rows = [(t, 'fraud', _iso(now + 60), 'chargeback') for t, c in truth.items() if c == 1]
    rows += [(t, 'legitimate', _iso(now + 30), 'review') for t in sorted(flagged) if truth[t] == 0]
    some_legit = next(t for t, c in truth.items() if c == 0)
    rows += [(some_legit, 'fraud', _iso(now + 10), 'customer'), (some_legit, 'legitimate', _iso(now + 20), 'review')]
    labels = tmp_path/'labels.csv'
    labels.write_text('transaction_id,label,labelled_at,source,note\n' + ''.join(f'{a},{b},{c},{d},\n' for a, b, c, d in rows))
    frauds = sum(truth.values())
    assert frauds >= 10

    # drift straight from the S3 records (the drift report reads the decision log through read_decisions)
    from fraud_lambda.drift import run_drift
    drift_labels = tmp_path/'drift_labels.csv'   # the drift report's own labels format: 0/1, latest verdict wins
    drift_labels.write_text('transaction_id,label,labelled_at\n' + ''.join(f'{a},{int(b == "fraud")},{c}\n' for a, b, c, _ in rows))
    drift_dir = run_drift(str(traffic['tmp']/'base.csv'), traffic['bundle'], f's3://{BUCKET}', drift_labels,
                          reports_dir=tmp_path/'reports', run_id='drift-from-s3', html=False, log=lambda *a: None)
    doc = json.loads((drift_dir/'drift.json').read_text())
    assert doc['traffic']['rows'] == N_REQUESTS - N_REPEATS and not doc['traffic']['simulated']
    assert doc['feedback']['labelled_rows'] == len({r[0] for r in rows})

    # retrain from the S3 decision log + labels + the older base, as if 31 days later (every row matured)
    from fraud_lambda.frame import frame_from_decision_log
    from fraud_lambda.retrain import retrain
    young = frame_from_decision_log(f's3://{BUCKET}', labels, tmp_path/'young.csv', base=traffic['tmp']/'base.csv', now=now + 120)
    labelled_ids = {r[0] for r in rows}
    assert young['young_unlabelled_excluded'] == len(truth) - len(labelled_ids)              # today: only labelled rows
    frame = frame_from_decision_log(f's3://{BUCKET}', labels, tmp_path/'frame.csv', base=traffic['tmp']/'base.csv',
                                    legit_fraction=0.5, now=now + 31 * 86400)
    assert frame['young_unlabelled_excluded'] == 0 and frame['replays_dropped'] == N_REPEATS
    assert frame['frauds'] >= frauds and frame['transactions'] == len(truth)
    res = retrain(frame['path'], traffic['store'], tmp_path/'reports', run_id='retrain-from-s3', n_boot=SMALL['n_boot'],
                  report_params={k: v for k, v in SMALL.items() if k != 'n_boot'}, training_frame=frame, log=lambda *a: None)
    assert res.decision in ('promoted', 'kept'), res.reason
    rec = json.loads(Path(res.paths['json']).read_text())
    tf = rec['training_frame']
    assert (tf['legit_fraction'], tf['label_delay_days'], tf['decisions']) == (0.5, 30.0, f's3://{BUCKET}')
    assert tf['sampling_correction']['margin_shift'] == pytest.approx(-0.6931471805599453)
    md = Path(res.paths['markdown']).read_text()
    assert 'label delay 30 days, legitimate rows kept at rate 0.5' in md and 'prior correction' in md


def test_transport_down_for_part_of_the_run_then_replay_is_exact(traffic, aws_env):
    "The subscription is removed for 600 of the 2,000 lines (CloudWatch Logs still keeps them); replay writes exactly those"
    logs, s3, subscribe = _transport(aws_env.endpoint)
    def outage(i):
        if i == 600: logs.delete_subscription_filter(logGroupName=GROUP, filterName='decision-records')
        if i == 1200: subscribe()
    _ship(logs, traffic['lines'], between=outage)
    before = list(iter_s3_decision_files(f's3://{BUCKET}'))
    assert len(before) == N_REQUESTS - 600
    t0, t1 = traffic['lines'][0][0] - 1, traffic['lines'][-1][0] + 1
    rep = replay_decisions(GROUP, f's3://{BUCKET}', t0, t1, settle_s=0)
    assert (rep['in_log'], rep['in_s3_before'], rep['written']) == (N_REQUESTS, N_REQUESTS - 600, 600)
    _check_exact(list(iter_s3_decision_files(f's3://{BUCKET}')), traffic['responses'])
    again = replay_decisions(GROUP, f's3://{BUCKET}', t0, t1, settle_s=0)             # a second run adds nothing
    assert again['written'] == 0 and again['in_s3_before'] == N_REQUESTS
    _check_exact(list(iter_s3_decision_files(f's3://{BUCKET}', _iso(t0), _iso(t1))), traffic['responses'])

