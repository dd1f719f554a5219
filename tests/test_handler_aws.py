"""The handler on AWS stand-ins over real HTTP (moto_server): the model from S3, alerts through SNS->SQS and DynamoDB,
idempotency in DynamoDB, and fault injection (the sink server stopped mid-run, the store unreachable at init)."""
import json, time
import boto3, pytest
from conftest import MotoServer, free_port
from fraud_lambda import handler as H
from fraud_lambda.sinks import ALERTS_TABLE_SCHEMA
from fraud_lambda.idempotency import IDEMPOTENCY_TABLE_SCHEMA
from fraud_lambda.spool import redeliver_spool
from fraud_lambda.store import open_store
from handler_support import call, event_body, load_event, make_bundle, with_body

def _sinks(endpoint):
    "Topic subscribed by a queue, the flagged-transactions table: their names and clients"
    sns, sqs, ddb = (boto3.client(s, endpoint_url=endpoint, region_name='us-east-1') for s in ('sns', 'sqs', 'dynamodb'))
    topic = sns.create_topic(Name='fraud-alerts')['TopicArn']
    q = sqs.create_queue(QueueName='alert-reader')['QueueUrl']
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']
    sns.subscribe(TopicArn=topic, Protocol='sqs', Endpoint=qarn, Attributes={'RawMessageDelivery': 'true'})
    ddb.create_table(TableName='flagged', **ALERTS_TABLE_SCHEMA)
    return {'topic': topic, 'queue': q, 'sqs': sqs, 'ddb': ddb}

def _read_queue(sqs, q, wait=1):
    msgs = []
    while True:
        r = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        if not r.get('Messages'): return msgs
        msgs += [json.loads(m['Body']) for m in r['Messages']]
        sqs.delete_message_batch(QueueUrl=q, Entries=[{'Id': str(i), 'ReceiptHandle': m['ReceiptHandle']} for i, m in enumerate(r['Messages'])])

@pytest.fixture()
def s3_model(aws_env, tmp_path):
    boto3.client('s3', region_name='us-east-1').create_bucket(Bucket='models')
    version = open_store('s3://models/prod').publish('fraud', make_bundle(tmp_path/'bundle'), promote=True)['version']
    return version

def _env(tmp_path, **extra):
    return {'FRAUD_LAMBDA_STORE_URI': 's3://models/prod', 'FRAUD_LAMBDA_CACHE_DIR': str(tmp_path/'cache'),
            'FRAUD_LAMBDA_STATE_DB': str(tmp_path/'state.db'), 'FRAUD_LAMBDA_DECISION_LOG': 'off',
            'FRAUD_LAMBDA_SNS_TOPIC_ARN': 'arn:aws:sns:us-east-1:123456789012:fraud-alerts', 'FRAUD_LAMBDA_ALERTS_TABLE': 'flagged',
            'AWS_DEFAULT_REGION': 'us-east-1', **extra}

def test_model_from_s3_alerts_to_sns_and_dynamodb(s3_model, aws_env, tmp_path):
    sinks = _sinks(aws_env.endpoint)
    boto3.client('dynamodb', region_name='us-east-1').create_table(TableName='idem', **IDEMPOTENCY_TABLE_SCHEMA)
    svc = H.init(_env(tmp_path, FRAUD_LAMBDA_ALERT_SINKS='sns,dynamodb', FRAUD_LAMBDA_IDEMPOTENCY_TABLE='idem', FRAUD_LAMBDA_ALERT_BUDGET_MS=3000))
    assert svc.holder.scorer.version == s3_model and any((tmp_path/'cache').rglob('model.npz'))  # pulled into the configured cache
    e = load_event('rest_score_fraud'); body = {**event_body(e), 'transaction_id': 'aws-fraud-1'}
    s, _, b = call(H.handler, with_body(e, body))
    assert s == 200 and b['decision'] == 'block' and b['model_version'] == s3_model
    msgs = _read_queue(sinks['sqs'], sinks['queue'])
    assert len(msgs) == 1 and msgs[0]['transaction_id'] == 'aws-fraud-1' and msgs[0]['decision'] == 'block'
    assert msgs[0]['metadata'] == body['metadata'] and msgs[0]['reasons'] and msgs[0]['model_version'] == s3_model
    item = sinks['ddb'].get_item(TableName='flagged', Key={'pk': {'S': 'aws-fraud-1'}})['Item']
    assert item['decision']['S'] == 'block'
    assert 'Item' in sinks['ddb'].get_item(TableName='idem', Key={'pk': {'S': 'aws-fraud-1'}})
    s, _, b2 = call(H.handler, with_body(e, body))  # a retry by the client: same answer, no second alert
    assert s == 200 and b2['idempotent_replay'] and b2['decision'] == 'block'
    assert _read_queue(sinks['sqs'], sinks['queue'], wait=0) == []
    s, _, b3 = call(H.handler, with_body(e, {**body, 'V1': body['V1'] + 1}))
    assert s == 409

def test_sink_server_stopped_mid_run_then_replayed_exactly_once(s3_model, aws_env, moto_private, tmp_path):
    port = moto_private.port; sinks = _sinks(moto_private.endpoint)
    env = _env(tmp_path, FRAUD_LAMBDA_ALERT_SINKS='sns,dynamodb', FRAUD_LAMBDA_ALERT_BUDGET_MS=300,
               FRAUD_LAMBDA_SPOOL=f"sqlite:///{tmp_path/'spool.db'}",
               AWS_ENDPOINT_URL_SNS=moto_private.endpoint, AWS_ENDPOINT_URL_DYNAMODB=moto_private.endpoint)
    import os
    old = {k: os.environ.get(k) for k in ('AWS_ENDPOINT_URL_SNS', 'AWS_ENDPOINT_URL_DYNAMODB')}
    os.environ.update({k: env[k] for k in old})
    try:
        H.init(env)
        e = load_event('http_score_fraud'); body = event_body(e)
        s, _, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'before-outage'}))
        assert s == 200 and b['decision'] == 'block'
        moto_private.stop()
        t = time.perf_counter()
        s, _, b = call(H.handler, with_body(e, {**body, 'transaction_id': 'during-outage'}))
        took = time.perf_counter() - t
        assert s == 200 and b['decision'] == 'block'
        assert took < 3.0, took   # bounded by the alert budget (300 ms) plus scoring and the spool write, not a hang
        restarted = MotoServer(port).start()
        try:
            sinks = _sinks(restarted.endpoint)  # fresh state on the same endpoint: recreate the topic, queue and table
            report = redeliver_spool(env=env)
            assert report.failed == 0 and report.remaining == 0 and report.delivered == 2, report
            msgs = _read_queue(sinks['sqs'], sinks['queue'])
            assert [m['transaction_id'] for m in msgs] == ['during-outage']
            items = sinks['ddb'].scan(TableName='flagged')['Items']
            assert [i['pk']['S'] for i in items] == ['during-outage']
            again = redeliver_spool(env=env)
            assert again.delivered == 0 and again.remaining == 0
        finally: restarted.stop()
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v

def test_store_unreachable_at_init_is_fast_503(tmp_path, monkeypatch):
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'x'); monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'x')
    monkeypatch.setenv('AWS_ENDPOINT_URL', f'http://127.0.0.1:{free_port()}')
    t = time.perf_counter()
    H.init(_env(tmp_path, FRAUD_LAMBDA_ALERT_SINKS='sqlite', FRAUD_LAMBDA_STORE_TIMEOUT_S=1))
    init_s = time.perf_counter() - t
    assert init_s < 10, init_s   # inside Lambda's 10 s init phase
    s, _, b = call(H.handler, load_event('rest_health'))
    assert s == 503 and b['reason'].startswith('StoreUnavailable'), b
    assert '127.0.0.1' not in json.dumps(b) and 's3://' not in json.dumps(b)
    s, h, b = call(H.handler, with_body(load_event('rest_score_legit'), event_body(load_event('rest_score_legit'))))
    assert s == 503 and b['error']['code'] == 'model_unavailable' and 'retry-after' in h
