"""Helpers shared by the handler, server and fuzz tests: a demo bundle, a local store, events and a Lambda context."""
import base64, copy, json, os, uuid
from pathlib import Path

EVENTS = Path(__file__).parent/'events'
from fraud_lambda.schema import FEATURES

def train_demo_model(seed=0, n=8000, rate=0.02):
    "A small balanced logistic regression on synthetic data (research side, tests only)"
    from fraud_lambda.data import synthetic_transactions, time_split, xy
    from fraud_lambda.train import make_candidate
    tr, _ = time_split(synthetic_transactions(n, fraud_rate=rate, seed=seed))
    return make_candidate('logreg_balanced').fit(*xy(tr))

def make_bundle(path, seed=0, thresholds=None, key=None):
    "Convert the demo model into a bundle directory at `path`"
    from fraud_lambda.convert import save_bundle
    return save_bundle(train_demo_model(seed), path, {'name': 'fraud', 'thresholds': thresholds or {'review': 0.5, 'block': 0.9},
                                                      'metrics': {'holdout': {'average_precision': 0.5}}}, key=key)

def load_event(name):
    "A committed SAM-generated event"
    return json.loads((EVENTS/f'{name}.json').read_text())

def event_body(event):
    "The decoded JSON body of an event"
    b = event['body']
    return json.loads(base64.b64decode(b) if event.get('isBase64Encoded') else b)

def with_body(event, body, b64=None, tid=None):
    "A copy of `event` carrying `body` (dict or raw str), base64-encoded like the original unless `b64` says otherwise"
    e = copy.deepcopy(event)
    if isinstance(body, dict) and tid: body = {**body, 'transaction_id': tid}
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    raw = raw.encode() if isinstance(raw, str) else raw
    b64 = e.get('isBase64Encoded', False) if b64 is None else b64
    e['body'] = base64.b64encode(raw).decode() if b64 else raw.decode('utf-8', 'surrogateescape')
    e['isBase64Encoded'] = b64
    return e

def with_route(event, method, path):
    "A copy of a v1 or v2 event for another method and path"
    e = copy.deepcopy(event)
    if e.get('version') == '2.0':
        e['rawPath'] = path; e['requestContext']['http']['method'] = method; e['requestContext']['http']['path'] = path
        e['routeKey'] = '$default'
    else:
        e['path'] = path; e['httpMethod'] = method; e['requestContext']['httpMethod'] = method
        e['pathParameters'] = {'proxy': path.lstrip('/')}
    return e

def as_function_url(event_v2):
    "A function-URL event: payload v2 with a lambda-url domain"
    e = copy.deepcopy(event_v2)
    e['requestContext']['domainName'] = 'abcdefghij.lambda-url.us-east-1.on.aws'
    e['requestContext']['domainPrefix'] = 'abcdefghij'; e['requestContext'].pop('authorizer', None)
    return e

class Context:
    "A Lambda context for direct handler calls"
    function_name = 'fraud-lambda-test'; function_version = '$LATEST'; memory_limit_in_mb = 1024
    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:fraud-lambda-test'
    def __init__(self): self.aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self): return 30_000

def call(handler, event):
    "Invoke the handler; return (status, headers, decoded JSON body)"
    r = handler(event, Context())
    body = r.get('body') or ''
    if r.get('isBase64Encoded'): body = base64.b64decode(body).decode()
    headers = {k.lower(): ', '.join(v) for k, v in (r.get('multiValueHeaders') or {}).items()}
    headers.update({k.lower(): v for k, v in (r.get('headers') or {}).items()})
    return r['statusCode'], headers, (json.loads(body) if body else None)

def local_env(tmp, store_dir, **extra):
    "Environment for a handler on a local store with SQLite state in `tmp`"
    return {'FRAUD_LAMBDA_HOME': str(tmp/'home'), 'FRAUD_LAMBDA_STORE_URI': str(store_dir),
            'FRAUD_LAMBDA_CACHE_DIR': str(tmp/'cache'), 'FRAUD_LAMBDA_STATE_DB': str(tmp/'state.db'),
            'FRAUD_LAMBDA_DECISION_LOG': str(tmp/'decisions.db'), 'FRAUD_LAMBDA_ALERT_SINKS': 'sqlite',
            'FRAUD_LAMBDA_REFRESH_SECONDS': '3600', **{k: str(v) for k, v in extra.items()}}
