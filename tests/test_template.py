"""template.yaml from the outside: cfn-lint with nothing ignored (errors, warnings and informational findings),
checkov with 0 failed checks (every skip carries its reason), `sam validate --lint` where SAM CLI is installed, and the promises the deploy code and the handler rely on
(environment names, least-privilege IAM, retention, alarms, outputs)."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from cfnlint.decode import decode
from fraud_lambda.package import HANDLER
from fraud_lambda.deploy import template_with_code

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT/'template.yaml'
ENV_NAMES = {'FRAUD_LAMBDA_STORE_URI', 'FRAUD_LAMBDA_MODEL_NAME', 'FRAUD_LAMBDA_REFRESH_SECONDS', 'FRAUD_LAMBDA_ALERT_SINKS',
             'FRAUD_LAMBDA_SNS_TOPIC_ARN', 'FRAUD_LAMBDA_ALERTS_TABLE', 'FRAUD_LAMBDA_IDEMPOTENCY_TABLE', 'FRAUD_LAMBDA_SPOOL',
             'FRAUD_LAMBDA_ALERT_BUDGET_MS', 'FRAUD_LAMBDA_BATCH_LIMIT', 'FRAUD_LAMBDA_CACHE_DIR', 'POWERTOOLS_SERVICE_NAME',
             'POWERTOOLS_METRICS_NAMESPACE', 'LOG_LEVEL', 'FRAUD_LAMBDA_LABELS_TABLE', 'FRAUD_LAMBDA_DECISION_LOG'}

def cfn_lint(path):
    exe = Path(sys.executable).with_name('cfn-lint')
    return subprocess.run([str(exe), '--include-checks', 'I', '--', str(path)], capture_output=True, text=True, timeout=120)

@pytest.fixture(scope='module')
def tpl():
    t, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return t

def res(tpl, name): return tpl['Resources'][name]

def test_cfn_lint_reports_nothing():
    r = cfn_lint(TEMPLATE)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr

def test_cfn_lint_catches_a_broken_template(tmp_path):
    "The lint test can fail: a dangling !Ref in the role and an out-of-range queue retention are reported"
    text = TEMPLATE.read_text()
    assert text.count('MessageRetentionPeriod: 1209600') == 1 and text.count('Resource: !Ref AlertTopic') == 1
    bad = tmp_path/'template.yaml'
    bad.write_text(text.replace('Resource: !Ref AlertTopic', 'Resource: !Ref NoSuchTopic').replace('MessageRetentionPeriod: 1209600', 'MessageRetentionPeriod: 9999999'))
    r = cfn_lint(bad)
    assert r.returncode != 0 and 'NoSuchTopic' in r.stdout and '9999999' in r.stdout, r.stdout

def _checkov():
    "checkov from $CHECKOV (make pytest sets it), the .venv-checkov of `make checkov-venv`, or PATH"
    local = ROOT/'.venv-checkov'/'bin'/'checkov'
    return os.environ.get('CHECKOV') or (str(local) if local.exists() else shutil.which('checkov'))

def checkov_summary(path):
    "checkov's JSON report on one template, offline (no guideline download)"
    env = {**os.environ, 'BC_SKIP_MAPPING': 'TRUE', 'CHECKOV_RUN_SCA_PACKAGE_SCAN_V2': 'false'}
    r = subprocess.run([_checkov(), '-f', str(path), '--framework', 'cloudformation', '--skip-download', '-o', 'json'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.strip().startswith('{'), r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(r.stdout)

_NO_CHECKOV = not _checkov() and not os.environ.get('CI')

@pytest.mark.skipif(_NO_CHECKOV, reason='checkov not installed (make checkov-venv); CI always runs it')
def test_checkov_finds_no_failed_check():
    doc = checkov_summary(TEMPLATE)
    s = doc['summary']
    print(f"checkov {s['checkov_version']}: Passed checks: {s['passed']}, Failed checks: {s['failed']}, "
          f"Skipped checks: {s['skipped']}")
    assert s['failed'] == 0 and s['parsing_errors'] == 0 and s['passed'] >= 30, doc['results']['failed_checks']
    skipped = doc['results']['skipped_checks']
    assert len(skipped) == s['skipped'] and all(len(c.get('check_result', {}).get('suppress_comment') or '') > 40
                                                for c in skipped), skipped
    assert {c['check_id'] for c in skipped} == {'CKV_AWS_18', 'CKV_AWS_119', 'CKV_AWS_158', 'CKV_AWS_120',
                                                'CKV_AWS_115', 'CKV_AWS_116', 'CKV_AWS_117', 'CKV_AWS_173'}

@pytest.mark.skipif(_NO_CHECKOV, reason='checkov not installed (make checkov-venv); CI always runs it')
def test_checkov_catches_an_unencrypted_queue(tmp_path):
    "The scan can fail: the dead-letter queue without its KMS key is reported (CKV_AWS_27)"
    text = TEMPLATE.read_text()
    assert text.count('      KmsMasterKeyId: alias/aws/sqs\n') == 1
    bad = tmp_path/'template.yaml'
    bad.write_text(text.replace('      KmsMasterKeyId: alias/aws/sqs\n', ''))
    failed = {c['check_id'] for c in checkov_summary(bad)['results']['failed_checks']}
    assert failed == {'CKV_AWS_27'}, failed

def _sam():
    return os.environ.get('SAM_CLI') or shutil.which('sam')

@pytest.mark.skipif(not _sam(), reason='SAM CLI not installed (set SAM_CLI=/path/to/sam, e.g. from its own venv)')
def test_sam_validate_lint():
    env = {**os.environ, 'SAM_CLI_TELEMETRY': '0', 'AWS_DEFAULT_REGION': 'us-east-1'}
    r = subprocess.run([_sam(), 'validate', '--lint', '-t', str(TEMPLATE)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and 'is a valid SAM Template' in r.stdout, r.stdout + r.stderr

def test_function_runs_the_handler_with_the_agreed_environment(tpl):
    p = res(tpl, 'FraudFunction')['Properties']
    assert (p['Handler'], p['Runtime']) == (HANDLER, 'python3.12')
    assert p['Architectures'] == [{'Ref': 'Architecture'}]
    assert set(p['Environment']['Variables']) == ENV_NAMES
    assert p['Environment']['Variables']['FRAUD_LAMBDA_CACHE_DIR'] == '/tmp/fraud-lambda'
    assert p['ReservedConcurrentExecutions'] == {'Fn::If': ['HasReservedConcurrency', {'Ref': 'ReservedConcurrency'}, {'Ref': 'AWS::NoValue'}]}
    assert res(tpl, 'FraudFunction')['Metadata']['BuildMethod'] == 'makefile'
    assert template_with_code(TEMPLATE.read_text(), 's3://b-b-b/k.zip').count('CodeUri: s3://b-b-b/k.zip') == 1

def test_api_needs_a_key_except_health(tpl):
    api = res(tpl, 'FraudApi')['Properties']
    assert api['Auth']['ApiKeyRequired'] is True and api['Auth']['UsagePlan']['CreateUsagePlan'] == 'PER_API'
    assert set(api['Auth']['UsagePlan']) >= {'Throttle', 'Quota'}
    events = res(tpl, 'FraudFunction')['Properties']['Events']
    routes = {(e['Properties']['Method'], e['Properties']['Path']): e['Properties'].get('Auth', {}).get('ApiKeyRequired', True) for e in events.values()}
    assert routes == {('post', '/score'): True, ('post', '/score/batch'): True, ('get', '/model'): True,
                      ('get', '/openapi.json'): True, ('get', '/health'): False, ('post', '/labels'): True}

def test_model_bucket_is_private_versioned_encrypted_and_retained(tpl):
    b = res(tpl, 'ModelBucket')
    assert (b['DeletionPolicy'], b['UpdateReplacePolicy']) == ('Retain', 'Retain')
    p = b['Properties']
    assert p['VersioningConfiguration'] == {'Status': 'Enabled'}
    assert all(p['PublicAccessBlockConfiguration'][k] is True for k in ('BlockPublicAcls', 'BlockPublicPolicy', 'IgnorePublicAcls', 'RestrictPublicBuckets'))
    cond, kms, s3 = p['BucketEncryption']['Fn::If']
    rule = lambda branch: branch['ServerSideEncryptionConfiguration'][0]['ServerSideEncryptionByDefault']
    assert cond == 'UseKms' and rule(s3) == {'SSEAlgorithm': 'AES256'}
    assert rule(kms) == {'SSEAlgorithm': 'aws:kms', 'KMSMasterKeyID': {'Ref': 'ModelBucketKmsKeyArn'}}

@pytest.mark.parametrize('table', ['AlertsTable', 'IdempotencyTable'])
def test_tables(tpl, table):
    p = res(tpl, table)['Properties']
    assert p['BillingMode'] == 'PAY_PER_REQUEST' and p['PointInTimeRecoverySpecification'] == {'PointInTimeRecoveryEnabled': True}
    assert p['TimeToLiveSpecification'] == {'AttributeName': 'expires_at', 'Enabled': True}
    assert p['KeySchema'] == [{'AttributeName': 'pk', 'KeyType': 'HASH'}] and p['AttributeDefinitions'] == [{'AttributeName': 'pk', 'AttributeType': 'S'}]

def test_dead_letter_queue(tpl):
    p = res(tpl, 'AlertDlq')['Properties']
    assert p['MessageRetentionPeriod'] == 14 * 86400 and p['KmsMasterKeyId'] == 'alias/aws/sqs'

def test_role_is_least_privilege(tpl):
    stmts = res(tpl, 'FunctionRole')['Properties']['Policies'][0]['PolicyDocument']['Statement']
    xray = [s for s in stmts if s.get('Sid') == 'WriteTraces']
    assert xray == [{'Sid': 'WriteTraces', 'Effect': 'Allow', 'Action': ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
                     'Resource': '*'}], 'X-Ray takes no resource-level permissions: its two write actions only'
    plain = [s for s in stmts if 'Fn::If' not in s and s not in xray]
    kms = [s for s in stmts if 'Fn::If' in s]
    grants = {(a, str(s['Resource'])) for s in plain for a in ([s['Action']] if isinstance(s['Action'], str) else s['Action'])}
    assert sorted({a for a, _ in grants}) == ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'logs:CreateLogStream', 'logs:PutLogEvents',
                                              's3:GetObject', 's3:ListBucket', 'sns:Publish', 'sqs:SendMessage']
    assert not any('*' in a for a, _ in grants) and not any(s['Resource'] == '*' for s in plain)
    by_sid = {s['Sid']: s for s in plain}
    assert by_sid['ReadModels']['Resource'] == {'Fn::Sub': '${ModelBucket.Arn}/${ModelPrefix}/models/*'}
    assert by_sid['ReadPolicies']['Resource'] == {'Fn::Sub': '${ModelBucket.Arn}/${ModelPrefix}/policies/*'}
    assert by_sid['ReadPolicies']['Action'] == 's3:GetObject'          # the function never writes a policy
    assert by_sid['ListModels']['Condition'] == {'StringLike': {'s3:prefix': [
        {'Fn::Sub': '${ModelPrefix}/models/*'}, {'Fn::Sub': '${ModelPrefix}/policies/*'}]}}
    assert by_sid['PublishAlerts']['Resource'] == {'Ref': 'AlertTopic'}
    assert by_sid['RecordAlertsAndIdempotency']['Resource'] == [{'Fn::GetAtt': ['AlertsTable', 'Arn']}, {'Fn::GetAtt': ['IdempotencyTable', 'Arn']}]
    assert by_sid['SpoolFailedAlerts']['Resource'] == {'Fn::GetAtt': ['AlertDlq', 'Arn']}
    assert by_sid['WriteOwnLogs']['Resource'] == {'Fn::GetAtt': ['FunctionLogGroup', 'Arn']}
    assert by_sid['RecordLabels'] == {'Sid': 'RecordLabels', 'Effect': 'Allow', 'Action': ['dynamodb:PutItem', 'dynamodb:Query'],
                                      'Resource': {'Fn::GetAtt': ['LabelsTable', 'Arn']}}
    assert len(kms) == 1 and kms[0]['Fn::If'][1]['Action'] == 'kms:Decrypt'

def test_alarms_and_logs(tpl):
    alarms = {k: r['Properties'] for k, r in tpl['Resources'].items() if r['Type'] == 'AWS::CloudWatch::Alarm'}
    metrics = {(p['Namespace'], p['MetricName'], p.get('ExtendedStatistic', p.get('Statistic'))) for p in alarms.values()}
    assert metrics == {('AWS/Lambda', 'Errors', 'Sum'), ('AWS/Lambda', 'Throttles', 'Sum'), ('AWS/Lambda', 'Duration', 'p99'), ('AWS/ApiGateway', '5XXError', 'Sum')}
    assert res(tpl, 'FunctionLogGroup')['Properties']['RetentionInDays'] == {'Ref': 'LogRetentionDays'}
    assert res(tpl, 'FraudFunction')['Properties']['LoggingConfig'] == {'LogGroup': {'Ref': 'FunctionLogGroup'}}

def test_outputs(tpl):
    assert set(tpl['Outputs']) >= {'ApiUrl', 'ApiKeyId', 'ModelBucketName', 'ModelStoreUri', 'AlertTopicArn', 'AlertsTableName',
                                   'IdempotencyTableName', 'AlertDlqUrl'}

# ---- decision log (issue 12): stream, subscription, processor, bucket lifecycle, Glue table, labels table
from fraud_lambda.decision_transport import FILTER_PATTERN, processor_source
from fraud_lambda.schema import FEATURES

def _statements(tpl, role):
    return [s for pol in res(tpl, role)['Properties']['Policies'] for s in pol['PolicyDocument']['Statement']]

def _grants(stmts):
    return {(a, str(r)) for s in stmts for a in ([s['Action']] if isinstance(s['Action'], str) else s['Action'])
            for r in (s['Resource'] if isinstance(s['Resource'], list) else [s['Resource']])}

def test_processor_code_is_the_notebook_source(tpl):
    "The inline processor is exactly fraud_lambda.decision_transport.processor_source(), under the 4 KB ZipFile limit"
    p = res(tpl, 'DecisionProcessorFunction')['Properties']
    assert p['Code']['ZipFile'].strip() == processor_source().strip()
    assert len(p['Code']['ZipFile'].encode()) < 4096
    assert (p['Handler'], p['Runtime']) == ('index.firehose_transform', 'python3.12')
    ns = {}
    exec(compile(p['Code']['ZipFile'], 'index.py', 'exec'), ns)
    assert ns['firehose_transform']({'records': []}) == {'records': []}

def test_decision_stream_writes_the_layout_through_the_processor(tpl):
    d = res(tpl, 'DecisionDeliveryStream')['Properties']['ExtendedS3DestinationConfiguration']
    assert d['BucketARN'] == {'Fn::GetAtt': ['DecisionBucket', 'Arn']} and d['Prefix'] == 'decisions/'
    assert (d['CompressionFormat'], d['FileExtension']) == ('GZIP', '.jsonl.gz')
    assert d['ErrorOutputPrefix'].startswith('decisions-errors/')
    procs = d['ProcessingConfiguration']['Processors']
    assert d['ProcessingConfiguration']['Enabled'] is True and [p['Type'] for p in procs] == ['Lambda']
    assert {'ParameterName': 'LambdaArn', 'ParameterValue': {'Fn::GetAtt': ['DecisionProcessorFunction', 'Arn']}} in procs[0]['Parameters']
    f = res(tpl, 'DecisionSubscriptionFilter')['Properties']
    assert f['LogGroupName'] == {'Ref': 'FunctionLogGroup'} and f['FilterPattern'] == FILTER_PATTERN
    assert f['DestinationArn'] == {'Fn::GetAtt': ['DecisionDeliveryStream', 'Arn']}

def test_decision_roles_are_least_privilege(tpl):
    "Each role can do exactly its step: logs -> stream, stream -> bucket prefixes + processor, processor -> its logs"
    sub = _grants(_statements(tpl, 'DecisionSubscriptionRole'))
    assert sub == {('firehose:PutRecord', str({'Fn::GetAtt': ['DecisionDeliveryStream', 'Arn']})),
                   ('firehose:PutRecordBatch', str({'Fn::GetAtt': ['DecisionDeliveryStream', 'Arn']}))}
    stream = _grants(_statements(tpl, 'DecisionStreamRole'))
    assert {a for a, _ in stream} == {'s3:PutObject', 's3:AbortMultipartUpload', 's3:GetBucketLocation', 's3:ListBucket',
                                      's3:ListBucketMultipartUploads', 'lambda:InvokeFunction',
                                      'lambda:GetFunctionConfiguration', 'logs:PutLogEvents'}
    assert {r for a, r in stream if a == 's3:PutObject'} == {str({'Fn::Sub': '${DecisionBucket.Arn}/decisions/*'}),
                                                             str({'Fn::Sub': '${DecisionBucket.Arn}/decisions-errors/*'})}
    proc = _grants(_statements(tpl, 'DecisionProcessorRole'))
    assert proc == {('logs:CreateLogStream', str({'Fn::GetAtt': ['DecisionProcessorLogGroup', 'Arn']})),
                    ('logs:PutLogEvents', str({'Fn::GetAtt': ['DecisionProcessorLogGroup', 'Arn']}))}
    for role in ('DecisionSubscriptionRole', 'DecisionStreamRole', 'DecisionProcessorRole'):
        assert not any('*' in a or r == "'*'" or r == '*' for a, r in _grants(_statements(tpl, role))), role
    trust = res(tpl, 'DecisionSubscriptionRole')['Properties']['AssumeRolePolicyDocument']['Statement'][0]
    assert trust['Principal'] == {'Service': 'logs.amazonaws.com'} and 'aws:SourceArn' in trust['Condition']['StringLike']

def test_decision_bucket_lifecycle_and_privacy(tpl):
    b = res(tpl, 'DecisionBucket')
    assert (b['DeletionPolicy'], b['UpdateReplacePolicy']) == ('Retain', 'Retain')
    p = b['Properties']
    assert all(p['PublicAccessBlockConfiguration'][k] is True for k in ('BlockPublicAcls', 'BlockPublicPolicy', 'IgnorePublicAcls', 'RestrictPublicBuckets'))
    rules = {r['Id']: r for r in p['LifecycleConfiguration']['Rules']}
    d = rules['decisions-tiering-and-expiry']
    assert d['Prefix'] == 'decisions/' and d['ExpirationInDays'] == {'Ref': 'DecisionLogExpirationDays'}
    assert d['Transitions'] == [{'StorageClass': 'STANDARD_IA', 'TransitionInDays': {'Ref': 'DecisionLogInfrequentAccessDays'}}]
    assert rules['errors-expiry']['Prefix'] == 'decisions-errors/'

def test_glue_table_projects_the_hour_partitions(tpl):
    "No crawler: partition projection on dt = yyyy/MM/dd/HH, the Firehose prefix; columns are the record's fields"
    t = res(tpl, 'DecisionsTable')['Properties']['TableInput']
    prm = t['Parameters']
    assert (prm['projection.enabled'], prm['projection.dt.type'], prm['projection.dt.format'],
            prm['projection.dt.interval.unit']) == ('true', 'date', 'yyyy/MM/dd/HH', 'HOURS')
    assert prm['storage.location.template'] == {'Fn::Sub': 's3://${DecisionBucket}/decisions/${!dt}/'}
    assert t['PartitionKeys'] == [{'Name': 'dt', 'Type': 'string'}]
    sd = t['StorageDescriptor']
    assert sd['SerdeInfo']['SerializationLibrary'] == 'org.openx.data.jsonserde.JsonSerDe'
    cols = {c['Name']: c['Type'] for c in sd['Columns']}
    assert list(cols)[:5] == ['schema_version', 'transaction_id', 'request_id', 'scored_at', 'source']
    assert cols['inputs'] == 'struct<' + ','.join(f'{f.lower()}:double' for f in FEATURES) + '>'
    assert {'model_version', 'manifest_sha256', 'thresholds', 'fraud_probability', 'anomaly_score', 'decision', 'reasons',
            'idempotent_replay', 'latency_ms', 'policy', 'metadata'} <= set(cols)
    assert not any(r['Type'] == 'AWS::Glue::Crawler' for r in tpl['Resources'].values())

def test_labels_table_and_function_environment(tpl):
    p = res(tpl, 'LabelsTable')['Properties']
    assert p['KeySchema'] == [{'AttributeName': 'transaction_id', 'KeyType': 'HASH'}, {'AttributeName': 'sk', 'KeyType': 'RANGE'}]
    assert {a['AttributeName']: a['AttributeType'] for a in p['AttributeDefinitions']} == {'transaction_id': 'S', 'sk': 'S'}
    assert p['BillingMode'] == 'PAY_PER_REQUEST' and res(tpl, 'LabelsTable')['DeletionPolicy'] == 'Retain'
    env = res(tpl, 'FraudFunction')['Properties']['Environment']['Variables']
    assert env['FRAUD_LAMBDA_LABELS_TABLE'] == {'Ref': 'LabelsTable'} and env['FRAUD_LAMBDA_DECISION_LOG'] == 'stdout'
    assert set(tpl['Outputs']) >= {'DecisionBucketName', 'DecisionLogUri', 'DecisionDeliveryStreamName', 'DecisionsDatabaseName',
                                   'LabelsTableName'}

def test_api_access_logs_and_tracing(tpl):
    api = res(tpl, 'FraudApi')
    p = api['Properties']
    assert p['TracingEnabled'] is True and res(tpl, 'FraudFunction')['Properties']['Tracing'] == 'Active'
    assert p['AccessLogSetting']['DestinationArn'] == {'Fn::GetAtt': ['ApiAccessLogGroup', 'Arn']}
    fields = json.loads(p['AccessLogSetting']['Format'])
    assert {'requestId', 'status', 'apiKeyId', 'latencyMs', 'xrayTraceId'} <= set(fields) and fields['status'] == '$context.status'
    assert res(tpl, 'ApiAccessLogGroup')['Properties']['RetentionInDays'] == {'Ref': 'LogRetentionDays'}
    assert api['DependsOn'] == 'ApiGatewayAccount'
    assert res(tpl, 'ApiGatewayAccount')['Properties']['CloudWatchRoleArn'] == {'Fn::GetAtt': ['ApiGatewayLogsRole', 'Arn']}
