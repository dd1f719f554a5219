"""Cold start before/after in one run: the Lambda zip of another checkout (the baseline, e.g. /work/main, built by its
own code and virtualenv), this checkout's zip and the original design's stack, interleaved in the clean-runtime harness
(`fraud_lambda.bench_package.clean_runtime_cold_start`), plus `-X importtime` profiles of both zips.

    .venv/bin/python scripts/cold_start_ab.py --baseline /work/main --run reports/run-... --runs 5

Writes OUT/cold_start_ab.json and OUT/importtime_{baseline,ours}.txt (top cumulative rows)."""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from fraud_lambda import bench_package as B
from fraud_lambda.bench_scoring import holdout_rows
from fraud_lambda.bench_handler import transaction_bodies
from fraud_lambda.deploy import publish_champion
from fraud_lambda.motoserver import MotoServer
from fraud_lambda.package import build_package, runtime_sdk


def _baseline_zip(checkout:Path, out:Path, version:str) -> Path:
    "The baseline checkout's zip, built by its own package code in its own virtualenv"
    code = ("import sys; from fraud_lambda.package import build_package; "
            f"print(build_package('x86_64', {str(out)!r}, python_version={version!r}, echo=None))")
    r = subprocess.run([str(checkout/'.venv/bin/python'), '-c', code], cwd=checkout, capture_output=True, text=True)
    if r.returncode: sys.exit(f"building the baseline zip in {checkout} failed:\n{r.stderr[-2000:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def _top(rows:list, n:int=40) -> str:
    "The `n` largest cumulative rows (depth <= 3), as a table"
    keep = sorted((r for r in rows if r['depth'] <= 3), key=lambda r: -r['cumulative_ms'])[:n]
    return '\n'.join(f"{r['cumulative_ms']:9.1f} {r['self_ms']:8.1f}  {'  ' * r['depth']}{r['module']}" for r in keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--baseline', required=True, type=Path)
    ap.add_argument('--run', required=True, type=Path, help='a report run folder (models/bundle, seed_smote_rf.joblib)')
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--profiles', type=int, default=3)
    ap.add_argument('--out', type=Path, default=Path('reports/bench/profile'))
    a = ap.parse_args()
    python, version = B.lambda_python()
    work = Path(tempfile.mkdtemp(prefix='fraud-lambda-cold-ab-'))
    ours = build_package('x86_64', work/'ours', python_version=version, echo=None)
    base = _baseline_zip(a.baseline.resolve(), work/'baseline', version)
    seed = B.build_seed_package(work/'seed', 'x86_64', version)
    metrics = json.loads((a.run/'metrics.json').read_text())
    X = holdout_rows(metrics['data']['source'])
    bundle, seed_model = a.run/'models'/'bundle', a.run/'models'/'seed_smote_rf.joblib'
    cs = B.clean_runtime_cold_start(bundle, ours, X, a.runs, work/'cold', python, version, seed_zip=seed,
                                    seed_model=seed_model, baseline_zip=base)
    sdk = work/'cold'/'sdk'
    profiles = {'baseline': [], 'ours': []}
    with MotoServer() as moto:
        res = B.aws_resources(moto.endpoint)
        publish_champion(bundle, res['store_uri'], echo=None, client=B.aws_clients(moto.endpoint)['s3'])
        bodies = iter(transaction_bodies(X, f'it{time.time_ns()}', 2 * a.profiles, seed=2))
        for i in range(a.profiles):
            for k, task in (('baseline', work/'cold'/'task-baseline'), ('ours', work/'cold'/'task')):
                env = B.lambda_env(res, work/f'it-{k}{i}', version)
                profiles[k].append(B.import_profile(task, sdk, env, B.rest_event(next(bodies)), python))
    a.out.mkdir(parents=True, exist_ok=True)
    summary = {k: {'import_total_ms_runs': [round(p['total_ms'], 1) for p in v],
                   'import_total_ms': float(np.median([p['total_ms'] for p in v])), 'modules': v[0]['modules']}
               for k, v in profiles.items()}
    for k, v in profiles.items():
        med = sorted(v, key=lambda p: p['total_ms'])[len(v) // 2]
        (a.out/f'importtime_{k}.txt').write_text(
            f"# -X importtime, clean python {version}, {k} zip, median of {len(v)} runs by total "
            f"({med['total_ms']:.0f} ms, {med['modules']} modules); cumulative ms, self ms, module\n" + _top(med['rows']))
    doc = {'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'baseline': str(a.baseline),
           'clean_runtime': {k: v for k, v in cs.items()}, 'import_profile': summary,
           'zip_mb': {'ours': ours.stat().st_size / 2**20, 'baseline': base.stat().st_size / 2**20,
                      'seed': seed.stat().st_size / 2**20}}
    (a.out/'cold_start_ab.json').write_text(json.dumps(doc, indent=1))
    c = cs
    print(json.dumps({'ours_ms': c['cold_start_ms'], 'baseline_ms': c['baseline']['cold_start_ms'],
                      'seed_ms': c['seed']['cold_start_ms'], 'ours_cpu_ms': c['cold_start_cpu_ms'],
                      'baseline_cpu_ms': c['baseline']['cold_start_cpu_ms'], 'seed_cpu_ms': c['seed']['cold_start_cpu_ms'],
                      'import': summary, 'zip_mb': doc['zip_mb']}, indent=1))


if __name__ == '__main__':
    main()
