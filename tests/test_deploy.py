"""The Lambda package and `deploy` from the outside.

Packages: built once per architecture for the session (real manylinux wheels from the package index), then checked for
size limits, contents (serving modules in; research stack and runtime-provided boto3 out), the architecture of numpy's
compiled extension, and (x86_64, where a python3.12 exists) that it imports and runs under a bare python3.12 with only
boto3 at RUNTIME_BOTO3_FLOOR behind it.

Deploy: against a real moto_server over HTTP. moto cannot expand the SAM transform or run Lambda, so the stack here is
TWIN, a plain-resource twin of template.yaml (bucket, topic, tables, queue, the same outputs) whose single `CodeUri:`
line sits in the template Metadata where the rewrite can be observed. What runs for real: credentials and account
lookup, artifacts bucket creation and settings, content-addressed upload, CREATE/UPDATE change sets, no-change
detection, dry-run cleanup, outputs, and (when fraud_lambda.store is present) champion publishing to the stack's bucket."""
import hashlib, json, os, shutil, subprocess, sys, zipfile
from pathlib import Path
import boto3, pytest
from fraud_lambda import deploy as D
from fraud_lambda import package as P
from fraud_lambda.bundle import sha256_file

ROOT = Path(__file__).resolve().parents[1]
ELF_MACHINE = {'x86_64': 0x3E, 'arm64': 0xB7}
RUNTIME_PROVIDED_TOP = ('boto3', 'botocore', 's3transfer', 'jmespath', 'urllib3', 'dateutil', 'six.py')
SEED_ONLY = ('scikit_learn', 'scipy', 'pandas', 'matplotlib', 'imbalanced_learn', 'lightgbm', 'joblib', 'threadpoolctl')

TWIN = """AWSTemplateFormatVersion: '2010-09-09'
Description: plain-resource twin of template.yaml for moto, which cannot run the SAM transform
Metadata:
  FraudFunction:
    CodeUri: fraud_lambda/
Parameters:
  Architecture:
    Type: String
    Default: x86_64
    AllowedValues: [x86_64, arm64]
  ModelPrefix:
    Type: String
    Default: fraud-lambda
Resources:
  ModelBucket:
    Type: AWS::S3::Bucket
    Properties:
      VersioningConfiguration:
        Status: Enabled
  AlertTopic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: fraud-lambda alerts
  AlertsTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  AlertDlq:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
Outputs:
  ApiUrl:
    Value: !Sub 'https://twin.execute-api.${AWS::Region}.amazonaws.com/prod'
  ApiKeyId:
    Value: twinkey123
  ModelBucketName:
    Value: !Ref ModelBucket
  ModelStoreUri:
    Value: !Sub 's3://${ModelBucket}/${ModelPrefix}'
  AlertDlqUrl:
    Value: !Ref AlertDlq
"""

# ---------------------------------------------------------------- packages

@pytest.fixture(scope='session')
def packages(tmp_path_factory):
    "{arch: zip path}, each built once; built without the serving modules this checkout does not have yet (reported)"
    out = tmp_path_factory.mktemp('dist'); missing = P.missing_serving_modules()
    if missing: print(f"\nbuilding without {', '.join(missing)} (not in this checkout yet)")
    return {arch: P.build_package(arch, out, missing_ok=bool(missing), echo=print) for arch in ('x86_64', 'arm64')}

def names(path): return zipfile.ZipFile(path).namelist()

@pytest.mark.parametrize('arch', ['x86_64', 'arm64'])
def test_package_is_within_lambda_limits(packages, arch):
    p = packages[arch]
    assert p.name == f"fraud-lambda-{P._version()}-{arch}.zip"
    s = P.check_package_limits(p)
    print(f"\n{arch}: {P.format_sizes(s)}")
    assert s['zipped_bytes'] <= P.ZIP_LIMIT and s['unzipped_bytes'] <= P.UNZIPPED_LIMIT
    assert s['unzipped_bytes'] > s['zipped_bytes'] > 1 * P.MB

@pytest.mark.parametrize('arch', ['x86_64', 'arm64'])
def test_package_holds_the_inference_path_only(packages, arch):
    n = names(packages[arch]); top = {x.split('/')[0] for x in n}
    assert 'fraud_lambda/handler.py' in P.SERVING_MODULES
    assert {m for m in P.SERVING_MODULES if (ROOT/m).exists()} <= set(n)
    src = [x for x in n if x.startswith('fraud_lambda/') and '__pycache__/' not in x]
    assert not [x for x in src if x not in P.SERVING_MODULES + P.OPTIONAL_SERVING_MODULES]
    assert not top & set(P.RESEARCH_STACK), top & set(P.RESEARCH_STACK)
    assert not top & set(RUNTIME_PROVIDED_TOP), top & set(RUNTIME_PROVIDED_TOP)
    dists = {x.split('-')[0].lower() for x in top if x.endswith('.dist-info')}
    assert {'numpy', 'pydantic', 'pydantic_core', 'aws_lambda_powertools'} <= dists
    assert not dists & {'boto3', 'botocore', 's3transfer', 'jmespath', 'urllib3', 'python_dateutil', 'six', *SEED_ONLY}, dists
    assert not [x for x in n if ('__pycache__/' in x and not x.endswith('.cpython-312.pyc')) or '/tests/' in x or x.endswith('.pyi') or x.startswith('bin/')]
    if P._python_for('3.12'):   # bytecode for the runtime's python, so cold starts do not compile from source
        assert 'fraud_lambda/__pycache__/handler.cpython-312.pyc' in n and 'numpy/__pycache__/__init__.cpython-312.pyc' in n

@pytest.mark.parametrize('arch', ['x86_64', 'arm64'])
def test_numpy_is_compiled_for_the_architecture(packages, arch):
    z = zipfile.ZipFile(packages[arch]); m = P.LAMBDA_ARCHS[arch]
    ext = [x for x in z.namelist() if x.startswith('numpy/_core/_multiarray_umath.') and x.endswith('.so')]
    assert ext == [f'numpy/_core/_multiarray_umath.cpython-312-{m}-linux-gnu.so'], ext
    head = z.read(ext[0])[:20]
    assert head[:4] == b'\x7fELF' and head[4] == 2 and int.from_bytes(head[18:20], 'little') == ELF_MACHINE[arch]
    wheel = z.read(next(x for x in z.namelist() if x.startswith('numpy-') and x.endswith('.dist-info/WHEEL'))).decode()
    assert f'Tag: cp312-cp312-manylinux' in wheel and wheel.count(f'_{m}') >= 1 and (m == 'x86_64') == ('aarch64' not in wheel)

def test_same_tree_same_zip(packages, tmp_path):
    "Deterministic: unzipping and re-zipping gives the identical bytes, so the SHA-256 names the content"
    p = packages['x86_64']; tree = tmp_path/'tree'
    zipfile.ZipFile(p).extractall(tree)
    assert sha256_file(P.write_zip(tree, tmp_path/'again.zip')) == sha256_file(p)

def test_missing_serving_module_fails_before_any_download(tmp_path):
    src = tmp_path/'src'
    for m in P.SERVING_MODULES:
        if not m.endswith('handler.py'): (src/m).parent.mkdir(parents=True, exist_ok=True); (src/m).write_text('')
    with pytest.raises(P.DeployError, match='fraud_lambda/handler.py missing from'):
        P.build_package('x86_64', tmp_path/'dist', source=src, echo=None)
    assert not (tmp_path/'dist').exists() or not any((tmp_path/'dist').iterdir())

def _python312():
    "A working python3.12 (pyenv's shim may exist without one)"
    for c in [*sorted(Path.home().glob('.pyenv/versions/3.12*/bin/python3.12')), shutil.which('python3.12')]:
        if c and subprocess.run([str(c), '-c', 'import sys; assert sys.version_info[:2] == (3, 12)'], capture_output=True).returncode == 0: return str(c)
    return None

IMPORT_CHECK = r"""
import importlib, importlib.util, json, os, sys, tempfile
pkg, sdk = sys.argv[1], sys.argv[2]
sys.path[:0] = [pkg, sdk]
import numpy as np, pydantic, boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
mods = sorted(f[:-3] for f in os.listdir(os.path.join(pkg, 'fraud_lambda')) if f.endswith('.py'))
for m in mods: importlib.import_module('fraud_lambda.' + m)
from fraud_lambda.bundle import write_bundle, load_bundle
d = tempfile.mkdtemp()
b = load_bundle(write_bundle(os.path.join(d, 'b'), {'name': 't'}, {'w': np.arange(3.0)}))
out = {'numpy': np.__version__, 'numpy_from_pkg': np.__file__.startswith(pkg), 'boto3': boto3.__version__,
       'boto3_from_sdk': boto3.__file__.startswith(sdk), 'modules': mods, 'bundle_sum': float(b.arrays['w'].sum()),
       'research_importable': [n for n in ('sklearn', 'scipy', 'pandas', 'joblib') if importlib.util.find_spec(n)]}
if 'store' in mods:
    from fraud_lambda.store import open_store
    out['s3_client'] = type(open_store('s3://fraud-lambda-test/p').backend.client).__name__
if 'awsclient' in mods:
    from fraud_lambda.awsclient import aws_client
    out['alert_clients'] = [type(aws_client(s)).__name__ for s in ('sns', 'dynamodb', 'sqs')]
print(json.dumps(out))
"""

@pytest.mark.skipif(not _python312(), reason='no python3.12 interpreter on this machine')
def test_package_runs_on_bare_python312_with_the_oldest_runtime_sdk(packages, tmp_path_factory):
    "The x86_64 zip under `python3.12 -I -S` (no site-packages), boto3 at RUNTIME_BOTO3_FLOOR behind it, as Lambda's /var/runtime"
    base = tmp_path_factory.mktemp('runtime'); pkg, sdk = base/'task', base/'sdk'
    zipfile.ZipFile(packages['x86_64']).extractall(pkg)
    P.runtime_sdk(sdk)
    env = {'PATH': '/usr/bin:/bin', 'AWS_DEFAULT_REGION': 'us-east-1', 'HOME': str(base)}
    r = subprocess.run([_python312(), '-I', '-S', '-c', IMPORT_CHECK, str(pkg), str(sdk)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1]); print('\n', out)
    assert out['numpy_from_pkg'] and out['boto3_from_sdk'] and out['boto3'] == P.RUNTIME_BOTO3_FLOOR
    assert out['bundle_sum'] == 3.0 and out['research_importable'] == []
    assert {'__init__', 'preprocess', 'bundle'} <= set(out['modules'])

# ---------------------------------------------------------------- deploy against moto

@pytest.fixture(scope='module')
def moto_cfn():
    """A moto server of this module's own: ThreadedMotoServer, real HTTP on 127.0.0.1, with one moto bug patched.
    moto 5.2 gives a stack created or updated by *executing a change set* no outputs (ChangeSet.apply does not rebuild
    the output map, Stack.update does); real CloudFormation does. The patch rebuilds it after apply, nothing else."""
    from moto.server import ThreadedMotoServer
    from moto.cloudformation import models as cfm
    from conftest import free_port
    original = cfm.ChangeSet.apply
    def apply_then_outputs(self):
        original(self); st = self.stack
        st.template = self.template; st._parse_template(); st.output_map = st._create_output_map()
    cfm.ChangeSet.apply = apply_then_outputs
    port = free_port(); srv = ThreadedMotoServer(ip_address='127.0.0.1', port=port, verbose=False); srv.start()
    try: yield f'http://127.0.0.1:{port}'
    finally: srv.stop(); cfm.ChangeSet.apply = original

@pytest.fixture()
def cfn_env(moto_cfn, monkeypatch):
    "Fake credentials pointing at moto_cfn, state reset before the test"
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(moto_cfn + '/moto-api/reset', method='POST'), timeout=5).read()
    for k, v in {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_SESSION_TOKEN': 'testing',
                 'AWS_DEFAULT_REGION': 'us-east-1', 'AWS_ENDPOINT_URL': moto_cfn}.items(): monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    return moto_cfn

@pytest.fixture()
def twin(tmp_path):
    p = tmp_path/'twin.yaml'; p.write_text(TWIN); return p

def clients():
    return {s: boto3.client(s, region_name='us-east-1') for s in ('s3', 'cloudformation')}

def pending_change_sets(cfn, stack='fraud'):
    "Change sets left on the stack other than the executed ones (CloudFormation drops those; moto keeps them as EXECUTE_COMPLETE)"
    return [s['ChangeSetName'] for s in cfn.list_change_sets(StackName=stack)['Summaries'] if s.get('ExecutionStatus') != 'EXECUTE_COMPLETE']

def run(capsys, **kw):
    res = D.deploy(region='us-east-1', poll_s=0.05, timeout_s=60, **kw)
    return res, capsys.readouterr().out

def test_no_credentials_is_a_clear_error_and_touches_nothing(moto_server, monkeypatch, tmp_path, twin, packages):
    moto_server.reset()
    for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI',
              'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_WEB_IDENTITY_TOKEN_FILE'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('AWS_SHARED_CREDENTIALS_FILE', str(tmp_path/'none')); monkeypatch.setenv('AWS_CONFIG_FILE', str(tmp_path/'none'))
    monkeypatch.setenv('AWS_EC2_METADATA_DISABLED', 'true'); monkeypatch.setenv('AWS_ENDPOINT_URL', moto_server.endpoint)
    with pytest.raises(D.DeployError, match='no AWS credentials found'):
        D.deploy('fraud', 'us-east-1', template=twin, package=packages['x86_64'], echo=None)
    with pytest.raises(D.DeployError, match="AWS profile 'ghost' is not configured"):
        D.deploy('fraud', 'us-east-1', profile='ghost', template=twin, package=packages['x86_64'], echo=None)
    s3 = boto3.client('s3', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')
    assert s3.list_buckets()['Buckets'] == []

def test_dry_run_of_a_first_deploy_leaves_nothing_behind(cfn_env, twin, packages, capsys):
    res, out = run(capsys, stack_name='fraud', template=twin, package=packages['x86_64'], dry_run=True)
    assert res['change_set_type'] == 'CREATE' and res['status'] is None
    assert {(r['action'], r['logical_id']) for r in res['changes']} == {('Add', 'ModelBucket'), ('Add', 'AlertTopic'), ('Add', 'AlertsTable'), ('Add', 'AlertDlq')}
    assert 'would change stack fraud (CREATE)' in out and 'Add' in out and 'AWS::DynamoDB::Table' in out
    c = clients()
    assert c['s3'].list_buckets()['Buckets'] == []
    assert D.stack_status(c['cloudformation'], 'fraud') is None
    assert 'bucket_created' not in res and 'uploaded' not in res

def test_first_deploy_uploads_creates_and_a_redeploy_changes_nothing(cfn_env, twin, packages, capsys):
    pkg = packages['x86_64']
    res, out = run(capsys, stack_name='fraud', template=twin, package=pkg, publish_model=False)
    c = clients(); s3, cfn = c['s3'], c['cloudformation']
    bucket = 'fraud-lambda-artifacts-123456789012-us-east-1'
    assert res['status'] == 'CREATE_COMPLETE' and res['bucket_created'] and res['uploaded']
    assert res['code_uri'] == f"s3://{bucket}/fraud/{sha256_file(pkg)[:16]}/{pkg.name}"
    pab = s3.get_public_access_block(Bucket=bucket)['PublicAccessBlockConfiguration']
    assert all(pab[k] for k in ('BlockPublicAcls', 'IgnorePublicAcls', 'BlockPublicPolicy', 'RestrictPublicBuckets'))
    assert s3.get_bucket_encryption(Bucket=bucket)['ServerSideEncryptionConfiguration']['Rules'][0]['ApplyServerSideEncryptionByDefault']['SSEAlgorithm'] == 'AES256'
    key = res['code_uri'].split(bucket + '/')[1]
    assert hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)['Body'].read()).hexdigest() == sha256_file(pkg)
    assert f"CodeUri: {res['code_uri']}" in cfn.get_template(StackName='fraud')['TemplateBody']
    assert res['outputs']['ModelStoreUri'].startswith('s3://') and res['outputs']['ModelStoreUri'].endswith('/fraud-lambda')
    assert 'API:     https://twin.execute-api.us-east-1.amazonaws.com/prod' in out
    assert 'aws apigateway get-api-key --api-key twinkey123 --include-value' in out
    again, out = run(capsys, stack_name='fraud', template=twin, package=pkg, publish_model=False)
    assert again['change_set_type'] == 'UPDATE' and again['changes'] == [] and 'no changes to stack fraud' in out
    assert again['uploaded'] is False and again['bucket_created'] is False and again['status'] == 'CREATE_COMPLETE'
    assert pending_change_sets(cfn) == []

def test_dry_run_of_an_update_lists_changes_and_applies_none(cfn_env, twin, packages, capsys):
    run(capsys, stack_name='fraud', template=twin, package=packages['x86_64'], publish_model=False)
    changed = twin.with_name('twin2.yaml')
    changed.write_text(TWIN.replace('MessageRetentionPeriod: 1209600', 'MessageRetentionPeriod: 345600')
                       .replace('Outputs:', '  IdempotencyTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST\n'
                                '      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]\n      KeySchema: [{AttributeName: pk, KeyType: HASH}]\nOutputs:'))
    res, out = run(capsys, stack_name='fraud', template=changed, package=packages['x86_64'], dry_run=True)
    assert {(r['action'], r['logical_id']) for r in res['changes']} == {('Modify', 'AlertDlq'), ('Add', 'IdempotencyTable')}
    assert 'would change stack fraud (UPDATE)' in out
    cfn = clients()['cloudformation']
    assert 'IdempotencyTable' not in cfn.get_template(StackName='fraud')['TemplateBody']
    assert pending_change_sets(cfn) == [] and D.stack_status(cfn, 'fraud') == 'CREATE_COMPLETE'

def test_bad_inputs_fail_before_aws(cfn_env, twin, packages, tmp_path):
    with pytest.raises(D.DeployError, match='stack name must be letters'): D.deploy('bad_name!', 'us-east-1', template=twin, echo=None)
    with pytest.raises(D.DeployError, match='arch must be one of'): D.deploy('fraud', 'us-east-1', arch='aarch64', template=twin, echo=None)
    with pytest.raises(D.DeployError, match='no template at'): D.deploy('fraud', 'us-east-1', template=tmp_path/'nope.yaml', echo=None)
    assert boto3.client('s3', region_name='us-east-1').list_buckets()['Buckets'] == []

def test_deploy_publishes_the_local_champion_to_the_stack_bucket(cfn_env, twin, packages, capsys, tmp_path):
    store = pytest.importorskip('fraud_lambda.store', reason='fraud_lambda.store not in this checkout yet')
    import numpy as np
    from fraud_lambda.bundle import write_bundle
    with pytest.raises(D.DeployError, match="cannot read the champion of 'fraud' to publish: store directory .* does not exist"):
        D.deploy('fraud', 'us-east-1', template=twin, package=packages['x86_64'], champion_from=str(tmp_path/'store'), echo=None)
    (tmp_path/'store').mkdir(); local = store.open_store(tmp_path/'store')
    with pytest.raises(D.DeployError, match="model 'fraud' has no champion in"):
        D.deploy('fraud', 'us-east-1', template=twin, package=packages['x86_64'], champion_from=str(tmp_path/'store'), echo=None)
    assert boto3.client('s3', region_name='us-east-1').list_buckets()['Buckets'] == []
    bundle = write_bundle(tmp_path/'b1', {'name': 'demo'}, {'w': np.arange(4.0)})
    version = local.publish('fraud', bundle, promote=True)['version']
    res, out = run(capsys, stack_name='fraud', template=twin, package=packages['x86_64'], champion_from=str(tmp_path/'store'))
    remote = store.open_store(res['outputs']['ModelStoreUri'])
    assert res['champion']['version'] == version and remote.champion('fraud')['version'] == version
    assert f'model fraud {version} published and promoted in' in out
    again, out = run(capsys, stack_name='fraud', template=twin, package=packages['x86_64'], champion_from=str(tmp_path/'store'))
    assert again['champion']['status'] == 'already champion' and 'no changes to stack fraud' in out
