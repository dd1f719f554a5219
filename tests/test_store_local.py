"""fraud_lambda.store's local backend across processes: compare-and-swap under flock, and log appends."""
import json, subprocess, sys, time, uuid
from pathlib import Path

import numpy as np, pytest

from fraud_lambda.bundle import write_bundle
from fraud_lambda.store import open_store

pytestmark = pytest.mark.timeout(60)

# Each child reads the pointer, reports 'ready', waits for 'go', then writes: every child holds the same ETag
# and passes the `expected` check, so only the conditional write under flock can reject the losers.
CHILD = r'''
import sys, time
from pathlib import Path
from fraud_lambda.store import ModelStore, StoreConflict, open_store
root, version, expected, sync = sys.argv[1:5]
sync = Path(sync); real = ModelStore._read_pointer
def read_then_wait(self, name):
    got = real(self, name)
    (sync/f'ready-{version}').touch()
    deadline = time.monotonic() + 20
    while not (sync/'go').exists() and time.monotonic() < deadline: time.sleep(0.005)
    return got
ModelStore._read_pointer = read_then_wait
try: print('won', open_store(root).promote('m', version, expected=expected, verify=False)['version'])
except StoreConflict as e: print('conflict', e)
'''


def test_concurrent_promotes_across_processes(tmp_path):
    root, sync = tmp_path/'store', tmp_path/'sync'; sync.mkdir()
    store = open_store(root); versions = []
    for i in range(5):
        v = f'2026010{i}T000000Z-{uuid.uuid4().hex[:8]}'
        write_bundle(tmp_path/v, {'model_version': v}, {'w': np.array([float(i)])})
        store.publish('m', tmp_path/v); versions.append(v)
    store.promote('m', versions[0])
    procs = [subprocess.Popen([sys.executable, '-c', CHILD, str(root), v, versions[0], str(sync)], stdout=subprocess.PIPE, text=True)
             for v in versions[1:]]
    deadline = time.monotonic() + 30
    while len(list(sync.glob('ready-*'))) < len(procs) and time.monotonic() < deadline: time.sleep(0.01)
    assert len(list(sync.glob('ready-*'))) == len(procs), 'children did not all read the pointer'
    (sync/'go').touch()
    outs = [p.communicate(timeout=30)[0].strip() for p in procs]
    won = [o for o in outs if o.startswith('won')]
    assert len(won) == 1 and sum(o.startswith('conflict') for o in outs) == 3, outs
    ch = store.champion('m')
    assert (ch['version'], ch['previous']) == (won[0].split()[1], versions[0])
    assert [r['version'] for r in store.read_log('m') if r['event'] == 'promote'] == [versions[0], ch['version']]
