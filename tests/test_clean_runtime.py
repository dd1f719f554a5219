"""The Lambda zip run as Lambda runs it: a fresh `python3.12 -I -S -B` with only the unzipped package and the runtime-era boto3
importable, configured only through the environment template.yaml gives the function, the model pulled from S3 on a real
moto_server over HTTP, alerts to SNS (read back through a subscribed SQS queue) and DynamoDB, idempotency in DynamoDB.

The harness (`fraud_lambda.bench_package.invoke_clean_runtime` and friends) is the one `make bench` uses to measure
`package.clean_runtime_cold_start_ms`; this test runs it with the committed SAM-generated events and prints the cold start.
No timing is asserted."""
import json, uuid, zipfile
import boto3, pytest
from fraud_lambda import bench_package as B
from fraud_lambda import package as P
from fraud_lambda.deploy import publish_champion
from fraud_lambda.schema import FEATURES
from handler_support import event_body, load_event, make_bundle, with_body

@pytest.fixture(scope='session')
def runtime(tmp_path_factory):
    "The x86_64 zip unzipped into an empty directory, the runtime SDK beside it, and the interpreter to run them"
    python, version = B.lambda_python()
    if version != '3.12': print(f"\nWARNING: no python3.12 here; running the clean runtime on python{version} ({python}) with a package built for it")
    base = tmp_path_factory.mktemp('clean-runtime')
    package = P.build_package('x86_64', base/'dist', python_version=version, echo=print)
    task = B.unpack_package(package, base/'task')
    sdk = B.compile_tree(P.runtime_sdk(base/'sdk', python_version=version), python)   # taken to be precompiled in Lambda's /var/runtime
    return {'python': python, 'version': version, 'task': task, 'sdk': sdk, 'package': package}

def test_the_package_holds_no_research_stack_and_no_sdk(runtime):
    top = {n.split('/')[0] for n in zipfile.ZipFile(runtime['package']).namelist()}
    assert 'fraud_lambda' in top and not top & {'sklearn', 'scipy', 'pandas', 'joblib', 'lightgbm', 'boto3', 'botocore'}, top
    assert (runtime['task']/'fraud_lambda'/'handler.py').is_file() and (runtime['sdk']/'boto3').is_dir()

def test_handler_in_a_clean_runtime_with_the_model_from_s3(runtime, aws_env, tmp_path):
    res = B.aws_resources(aws_env.endpoint)
    version = publish_champion(make_bundle(tmp_path/'bundle'), res['store_uri'], echo=None)['version']
    env = B.lambda_env(res, tmp_path/'fn', runtime['version'], budget_ms=2000)
    run = uuid.uuid4().hex[:8]
    names = ['rest_score_legit', 'rest_score_fraud', 'rest_score_bad', 'http_score_fraud']
    tids = {n: f'{n}-{run}' for n in names if n != 'rest_score_bad'}
    events = [with_body(load_event(n), event_body(load_event(n)), tid=tids.get(n)) for n in names]
    out = B.invoke_clean_runtime(runtime['task'], runtime['sdk'], env, events, runtime['python'])
    print(f"\nclean runtime (python {out['python']}, boto3 {out['boto3']}): cold start {out['cold_start_ms']:.0f} ms "
          f"(process start to first response; init {out['init_ms']:.0f} ms, first invoke {out['first_invoke_ms']:.1f} ms)")

    # the process was isolated and saw only the package and the SDK
    assert out['isolated'] and out['python'].startswith(runtime['version'])
    assert [p for p in out['sys_path'] if 'site-packages' in p] == [] and out['sys_path'][:2] == [str(runtime['task']), str(runtime['sdk'])]
    assert out['origins']['fraud_lambda.handler'].startswith(str(runtime['task'])) and out['origins']['numpy'].startswith(str(runtime['task']))
    assert out['origins']['boto3'].startswith(str(runtime['sdk'])) and out['boto3'] == P.RUNTIME_BOTO3_FLOOR
    assert out['research_importable'] == []
    assert out['loaded_at_init'], 'the service and model should be built at import (init phase), as AWS_LAMBDA_FUNCTION_NAME and AWS_EXECUTION_ENV are set'

    bodies = [json.loads(r['body']) for r in out['responses']]
    status = [r['statusCode'] for r in out['responses']]
    legit, fraud, bad, fraud_v2 = bodies
    assert status == [200, 200, 400, 200], list(zip(status, bodies))
    assert legit['decision'] == 'approve' and legit['fraud_probability'] < 0.5 and legit['transaction_id'] == tids['rest_score_legit']
    for b, n in ((fraud, 'rest_score_fraud'), (fraud_v2, 'http_score_fraud')):
        assert b['decision'] == 'block' and b['fraud_probability'] > 0.9 and b['transaction_id'] == tids[n], b
        assert 1 <= len(b['reasons']) <= 3 and all(r['feature'] in FEATURES and r['contribution'] > 0 for r in b['reasons']), b['reasons']
    assert {b['model_version'] for b in (legit, fraud, fraud_v2)} == {version}
    assert bad['error']['code'] == 'invalid_request' and {'Amount', 'V7'} <= {e['field'] for e in bad['error']['errors']}, bad

    # each fraud left one alert in SNS (read through the subscribed queue) and one item in DynamoDB; nothing was spooled
    c = B.aws_clients(aws_env.endpoint)
    msgs = B.read_queue(c['sqs'], res['reader_queue'])
    assert sorted(m['transaction_id'] for m in msgs) == sorted([tids['rest_score_fraud'], tids['http_score_fraud']]), msgs
    assert all(m['decision'] == 'block' and m['model_version'] == version and m['reasons'] for m in msgs)
    for n in ('rest_score_fraud', 'http_score_fraud'):
        item = c['dynamodb'].get_item(TableName=res['alerts_table'], Key={'pk': {'S': tids[n]}}).get('Item')
        assert item and item['decision']['S'] == 'block', (n, item)
    for tid in tids.values():
        assert 'Item' in c['dynamodb'].get_item(TableName=res['idempotency_table'], Key={'pk': {'S': tid}}), tid
    assert B.read_queue(c['sqs'], res['dlq_url'], wait_s=0) == []

def test_a_bad_configuration_fails_the_init_with_its_message(runtime, aws_env, tmp_path):
    res = B.aws_resources(aws_env.endpoint)
    env = {**B.lambda_env(res, tmp_path/'fn', runtime['version']), 'FRAUD_LAMBDA_ALERT_SINKS': 'sns,pager'}
    with pytest.raises(RuntimeError, match='FRAUD_LAMBDA_ALERT_SINKS must be a comma-separated list') as e:
        B.invoke_clean_runtime(runtime['task'], runtime['sdk'], env, [load_event('rest_score_legit')], runtime['python'])
    assert 'after 0 of 1 responses' in str(e.value)
