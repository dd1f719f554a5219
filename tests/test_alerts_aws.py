"""Alerts, spool, replay and idempotency against a real moto_server over HTTP, including a server stopped mid-run."""
import json, logging, socket, threading, time
import pytest
from conftest import free_port
from fraud_lambda.alerts import make_alert
from fraud_lambda.awsclient import aws_client
from fraud_lambda.sinks import ALERTS_TABLE_SCHEMA, DynamoDBSink, SNSSink, build_sinks
from fraud_lambda.spool import SQLiteSpool, SQSSpool, build_spool, redeliver, redeliver_spool
from fraud_lambda.dispatch import AlertDispatcher, build_dispatcher
from fraud_lambda.idempotency import IDEMPOTENCY_TABLE_SCHEMA, DynamoDBIdempotencyStore, hash_payload

TOPIC, QUEUE, DLQ, TABLE, IDEM = 'fraud-alerts', 'fraud-alerts-sub', 'fraud-alerts-dlq', 'flagged-transactions', 'fraud-idempotency'
BUDGET_MS = 250      # the outage phases check the caller is back within this
SETUP_BUDGET_MS = 5000  # where the test is not about time: a cold moto server answers its first publish in ~0.2-0.5 s

def _alert(i, decision='block'):
    return make_alert(f'tx-{i:04d}', 0.9, decision, 'm-test', [('V14', -2.5), ('Amount', 0.7)], {'channel': 'web'})

def _resources(dlq=True, topic=True, table=True):
    "Topic subscribed by a queue, the alerts table, the DLQ and the idempotency table on the current endpoint"
    sns, sqs, ddb = aws_client('sns', 2, 5), aws_client('sqs', 2, 5), aws_client('dynamodb', 2, 5)
    out = {}
    if topic:
        out['topic'] = sns.create_topic(Name=TOPIC)['TopicArn']
        out['queue'] = sqs.create_queue(QueueName=QUEUE)['QueueUrl']
        arn = sqs.get_queue_attributes(QueueUrl=out['queue'], AttributeNames=['QueueArn'])['Attributes']['QueueArn']
        sns.subscribe(TopicArn=out['topic'], Protocol='sqs', Endpoint=arn)
    if dlq: out['dlq'] = sqs.create_queue(QueueName=DLQ)['QueueUrl']
    if table:
        ddb.create_table(TableName=TABLE, **ALERTS_TABLE_SCHEMA)
        ddb.create_table(TableName=IDEM, **IDEMPOTENCY_TABLE_SCHEMA)
    return out

def _drain(queue_url):
    "Every message in the queue, deleted as read"
    sqs, out = aws_client('sqs', 2, 5), []
    while True:
        ms = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30).get('Messages', [])
        if not ms: return out
        for m in ms:
            out.append(json.loads(m['Body'])); sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m['ReceiptHandle'])

def _sns_keys(queue_url):
    "idempotency keys of the alerts that arrived through SNS -> SQS"
    return sorted(json.loads(env['Message'])['idempotency_key'] for env in _drain(queue_url))

def _table_items():
    items = aws_client('dynamodb', 2, 5).scan(TableName=TABLE, ConsistentRead=True)['Items']
    return sorted(i['idempotency_key']['S'] for i in items)

def _env(tmp_path, res, sinks='sqlite,sns,dynamodb', **extra):
    return {'FRAUD_LAMBDA_STATE_DB': str(tmp_path/'state.db'), 'FRAUD_LAMBDA_ALERT_SINKS': sinks, 'FRAUD_LAMBDA_SNS_TOPIC_ARN': res.get('topic', ''),
            'FRAUD_LAMBDA_ALERTS_TABLE': TABLE, 'FRAUD_LAMBDA_ALERT_BUDGET_MS': str(BUDGET_MS), **extra}

@pytest.fixture()
def private_env(moto_private, monkeypatch):
    "Fake credentials pointing at this test's own moto server (which the test may stop and restart)"
    for k, v in [('AWS_ACCESS_KEY_ID', 'testing'), ('AWS_SECRET_ACCESS_KEY', 'testing'), ('AWS_SESSION_TOKEN', 'testing'),
                 ('AWS_DEFAULT_REGION', 'us-east-1'), ('AWS_ENDPOINT_URL', moto_private.endpoint)]: monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    return moto_private

def test_clients_make_one_attempt(monkeypatch):
    "Our clients try once and fail fast against a closed port; botocore's own `max_attempts: 1` would try twice"
    from botocore.config import Config
    import boto3
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'x'); monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'x')
    endpoint = f'http://127.0.0.1:{free_port()}'
    def attempts(client):
        n = []
        client.meta.events.register('before-send', lambda **kw: n.append(1))
        with pytest.raises(Exception, match='Could not connect'): client.publish(TopicArn='arn:aws:sns:us-east-1:123456789012:t', Message='m')
        return len(n)
    assert attempts(aws_client('sns', 0.2, 0.2, region='us-east-1', endpoint_url=endpoint)) == 1
    legacy = boto3.client('sns', region_name='us-east-1', endpoint_url=endpoint, config=Config(retries={'max_attempts': 1}, connect_timeout=0.2))
    assert attempts(legacy) == 2

def test_sns_message_arrives_through_sqs(aws_env, tmp_path):
    res = _resources()
    sns_sink = [s for s in build_sinks(_env(tmp_path, res, sinks='sns')) if s.name == 'sns'][0]
    a = _alert(1)
    assert sns_sink.send(a) == 'published'
    [envelope] = _drain(res['queue'])
    assert json.loads(envelope['Message']) == a.to_dict()
    attrs = envelope['MessageAttributes']
    assert attrs['decision']['Value'] == 'block' and attrs['model_version']['Value'] == 'm-test'
    assert attrs['idempotency_key']['Value'] == 'tx-0001#block'

def test_dynamodb_sink_writes_once_per_transaction(aws_env):
    _resources(dlq=False, topic=False)
    sink, a = DynamoDBSink(TABLE), _alert(7)
    assert sink.send(a) == 'stored'
    assert sink.send(a) == 'duplicate'
    assert sink.send(_alert(7, 'review')) == 'conflict'
    assert _table_items() == ['tx-0007#block']
    item = aws_client('dynamodb', 2, 5).get_item(TableName=TABLE, Key={'pk': {'S': 'tx-0007'}})['Item']
    assert json.loads(item['alert_json']['S']) == a.to_dict() and item['decision']['S'] == 'block'

def test_idempotency_store_on_dynamodb(aws_env):
    _resources(dlq=False, topic=False)
    store = DynamoDBIdempotencyStore(IDEM)
    h1, h2 = hash_payload({'transaction_id': 'tx-1', 'Amount': 1.0}), hash_payload({'transaction_id': 'tx-1', 'Amount': 2.0})
    assert store.get('tx-1') is None
    assert store.put_if_absent('tx-1', h1, {'decision': 'block'}, ttl_s=600) == (True, None)
    stored, rec = store.put_if_absent('tx-1', h2, {'decision': 'approve'}, ttl_s=600)
    assert not stored and rec.response == {'decision': 'block'} and rec.matches(h1) and not rec.matches(h2)
    assert store.get('tx-1') == rec
    later = time.time() + 3600
    assert store.get('tx-1', now=later) is None
    assert store.put_if_absent('tx-1', h2, {'decision': 'approve'}, ttl_s=600, now=later) == (True, None)
    assert store.get('tx-1', now=later).response == {'decision': 'approve'}

def test_idempotency_race_stores_exactly_one(aws_env):
    _resources(dlq=False, topic=False)
    store, n = DynamoDBIdempotencyStore(IDEM, connect_timeout=2, read_timeout=5), 8
    barrier, results = threading.Barrier(n), [None] * n
    def go(i):
        barrier.wait()
        results[i] = store.put_if_absent('tx-race', hash_payload({'i': i}), {'winner': i}, ttl_s=600)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads: t.start()
    for t in threads: t.join()
    winners = [i for i, (stored, _) in enumerate(results) if stored]
    assert len(winners) == 1
    assert {rec.response['winner'] for stored, rec in results if not stored} == {winners[0]}
    assert store.get('tx-race').response == {'winner': winners[0]}
    assert aws_client('dynamodb', 2, 5).scan(TableName=IDEM)['Count'] == 1

def test_replay_resends_only_to_the_sink_that_missed(aws_env, tmp_path):
    "SNS took the alerts, DynamoDB had no table yet: only DynamoDB entries are spooled, and replay never publishes again"
    res = _resources(table=False)
    disp = build_dispatcher(_env(tmp_path, res, sinks='sns,dynamodb', FRAUD_LAMBDA_ALERT_BUDGET_MS=str(SETUP_BUDGET_MS)))
    outs = [disp.dispatch(_alert(i)) for i in range(3)]
    assert all(o.delivered == ('sns',) and o.spooled == ('dynamodb',) for o in outs)
    assert 'ResourceNotFoundException' in outs[0].errors['dynamodb']
    assert disp.spool.count() == 3
    _resources(dlq=False, topic=False)
    report = redeliver(disp.spool, disp.sinks)
    assert (report.delivered, report.failed, report.remaining) == (3, 0, 0)
    assert _table_items() == [f'tx-{i:04d}#block' for i in range(3)]
    assert _sns_keys(res['queue']) == [f'tx-{i:04d}#block' for i in range(3)]
    disp.close()

def test_sqs_spool_dlq(aws_env, tmp_path):
    "Sinks refuse (no topic, no table); the alerts go to the SQS DLQ; replay drains it exactly once"
    res = _resources(topic=False, table=False)
    topic_arn = 'arn:aws:sns:us-east-1:123456789012:' + TOPIC
    env = _env(tmp_path, {'topic': topic_arn}, sinks='sns,dynamodb', FRAUD_LAMBDA_SPOOL='sqs://' + res['dlq'], FRAUD_LAMBDA_ALERT_BUDGET_MS=str(SETUP_BUDGET_MS))
    disp = build_dispatcher(env)
    assert isinstance(disp.spool, SQSSpool)
    disp.spool.wait_s = 0
    outs = [disp.dispatch(_alert(i)) for i in range(4)]
    assert all(set(o.spooled) == {'sns', 'dynamodb'} and not o.unspooled for o in outs)
    assert disp.spool.count() == 8 and disp.spool.fallback.count() == 0
    peek = aws_client('sqs', 2, 5).receive_message(QueueUrl=res['dlq'], MaxNumberOfMessages=1, VisibilityTimeout=0, MessageAttributeNames=['All'])['Messages'][0]
    body = json.loads(peek['Body'])
    assert body['sink'] in ('sns', 'dynamodb') and body['alert']['transaction_id'].startswith('tx-')
    assert peek['MessageAttributes']['sink']['StringValue'] == body['sink']
    res.update(_resources(dlq=False))
    report = redeliver(disp.spool, disp.sinks)
    assert (report.delivered, report.failed, report.duplicates) == (8, 0, 0), report
    assert report.remaining == 0 and disp.spool.count() == 0
    assert _table_items() == [f'tx-{i:04d}#block' for i in range(4)]
    assert _sns_keys(res['queue']) == [f'tx-{i:04d}#block' for i in range(4)]
    disp.close()

def test_dispatch_survives_a_hanging_endpoint(monkeypatch, tmp_path):
    "An endpoint that accepts connections and never answers: the caller still returns at the budget and the alert is spooled"
    with socket.socket() as black_hole:
        black_hole.bind(('127.0.0.1', 0)); black_hole.listen(64)
        for k, v in [('AWS_ACCESS_KEY_ID', 'x'), ('AWS_SECRET_ACCESS_KEY', 'x'), ('AWS_DEFAULT_REGION', 'us-east-1'),
                     ('AWS_ENDPOINT_URL', f'http://127.0.0.1:{black_hole.getsockname()[1]}')]: monkeypatch.setenv(k, v)
        env = _env(tmp_path, {'topic': 'arn:aws:sns:us-east-1:123456789012:t'}, sinks='sns,dynamodb', FRAUD_LAMBDA_AWS_READ_TIMEOUT_MS='1500')
        disp = build_dispatcher(env)
        t0 = time.perf_counter(); out = disp.dispatch(_alert(1)); wall = time.perf_counter() - t0
        assert set(out.spooled) == {'sns', 'dynamodb'}
        assert 'no answer within 200 ms' in out.errors['sns']
        assert wall < 1.0, f'dispatch waited for the hanging endpoint ({wall:.2f} s; its read timeout is 1.5 s)'
        print(f'hanging endpoint: dispatch returned in {wall*1000:.0f} ms (budget {BUDGET_MS} ms)')
        assert disp.spool.count() == 2
        disp.close(wait=False)

def test_fault_injection_stop_dispatch_restart_replay(private_env, tmp_path, caplog):
    "Stop the server mid-run: dispatch returns within the budget and spools; restart, replay: each alert arrives exactly once"
    srv = private_env
    res = _resources()
    env = _env(tmp_path, res)
    warm = build_dispatcher({**env, 'FRAUD_LAMBDA_ALERT_BUDGET_MS': str(SETUP_BUDGET_MS)})
    before = [warm.dispatch(_alert(i)) for i in range(2)]
    assert all(o.ok and set(o.delivered) == {'sqlite', 'sns', 'dynamodb'} for o in before)
    assert _table_items() == ['tx-0000#block', 'tx-0001#block'] and _sns_keys(res['queue']) == ['tx-0000#block', 'tx-0001#block']
    warm.close()
    disp = build_dispatcher(env)

    srv.stop()
    walls, outs = [], []
    for i in range(100, 105):
        t0 = time.perf_counter(); outs.append(disp.dispatch(_alert(i))); walls.append(time.perf_counter() - t0)
    assert all(o.delivered == ('sqlite',) and set(o.spooled) == {'sns', 'dynamodb'} and not o.unspooled for o in outs)
    assert all('Could not connect' in o.errors['sns'] for o in outs)
    assert max(walls) < (BUDGET_MS + 1500) / 1000, f'dispatch took {max(walls):.3f} s with the server down'   # bounded, not a hang (loose: shared CI machines)
    print(f'server down: dispatch wall ms {[round(w * 1000, 1) for w in walls]} (budget {BUDGET_MS} ms)')
    assert disp.spool.count() == 10

    srv.start()
    res = _resources()
    report = redeliver_spool(env)
    assert (report.delivered, report.failed, report.remaining) == (10, 0, 0), report
    spooled_keys = [f'tx-{i:04d}#block' for i in range(100, 105)]
    assert _table_items() == spooled_keys
    assert _sns_keys(res['queue']) == spooled_keys
    again = redeliver_spool(env)
    assert (again.delivered, again.remaining) == (0, 0)
    assert _sns_keys(res['queue']) == [] and _table_items() == spooled_keys
    disp.close()

def test_sqs_spool_down_falls_back_to_local_file(private_env, tmp_path, caplog):
    "The whole endpoint is down, SQS spool included: entries go to the local file with the alert in an ERROR log; replay drains both"
    srv = private_env
    res = _resources()
    env = _env(tmp_path, res, sinks='sns,dynamodb', FRAUD_LAMBDA_SPOOL='sqs://' + res['dlq'])
    disp = build_dispatcher(env)
    srv.stop()
    with caplog.at_level(logging.ERROR, logger='fraud_lambda.alerts'):
        a42 = _alert(42)
        t0 = time.perf_counter(); out = disp.dispatch(a42); wall = time.perf_counter() - t0
    assert set(out.spooled) == {'sns', 'dynamodb'} and not out.unspooled
    assert wall < (BUDGET_MS + 250) / 1000
    fallback_lines = [json.loads(r.getMessage()) for r in caplog.records if 'alert_spool_fallback' in r.getMessage()]
    assert [l['alert'] for l in fallback_lines] == [a42.to_dict()] and set(fallback_lines[0]['sinks']) == {'sns', 'dynamodb'}
    local = SQLiteSpool(tmp_path/'state.db')
    assert sorted(e.sink for e in local.entries()) == ['dynamodb', 'sns']

    srv.start()
    res = _resources()
    spool = build_spool(env); spool.wait_s = 0
    report = redeliver(spool, build_sinks(env))
    assert (report.delivered, report.failed, report.remaining) == (2, 0, 0), report
    assert _table_items() == ['tx-0042#block'] and _sns_keys(res['queue']) == ['tx-0042#block']
    disp.close()
