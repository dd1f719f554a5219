"""`make bench` until the CLI has `fraud-lambda bench`: every benchmark section of fraud_lambda.bench on one report run.
Run: `.venv/bin/python bench/run_all.py [--run DIR|latest] [--duration 30] ...` (about 8 minutes with the defaults; local
only: the load goes to 127.0.0.1, AWS is a moto server on 127.0.0.1). The flags are the ones proposed for `fraud-lambda bench`."""
import argparse, sys
from fraud_lambda.bench import SECTIONS, run_all

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fraud-lambda bench', description='Benchmarks: scoring, handler, local API under load, package; into reports/bench/')
    p.add_argument('--run', default='latest', help="a report run folder, or 'latest' (default: the run reports/latest names)")
    p.add_argument('--reports-dir', default='reports', help='where runs and latest live (default: reports)')
    p.add_argument('--out', default='reports/bench', help='results.json and results.md go here (default: reports/bench)')
    p.add_argument('--data', help="transactions CSV for the holdout (default: the file the run was trained on)")
    p.add_argument('--only', default=','.join(SECTIONS), help=f"comma-separated sections (default: {','.join(SECTIONS)})")
    p.add_argument('--duration', type=float, default=30, help='seconds of HTTP load per trial (default: 30)')
    p.add_argument('--connections', default='4,16', help='HTTP connection counts to try (default: 4,16)')
    p.add_argument('--threads', type=int, default=1, help='wrk threads (default: 1)')
    p.add_argument('--n-single', type=int, default=2000, help='timed single-transaction calls per contender (default: 2000)')
    p.add_argument('--warmup', type=int, default=200, help='untimed calls first (default: 200)')
    p.add_argument('--cold-runs', type=int, default=5, help='scorer cold starts per contender (default: 5)')
    p.add_argument('--clean-runs', type=int, default=3, help='clean-runtime cold starts of the Lambda zip (default: 3)')
    p.add_argument('--tool', choices=['auto', 'wrk', 'python'], default='auto', help='HTTP load generator (default: wrk if installed)')
    p.add_argument('--no-seed-package', action='store_true', help="skip sizing the original design's scikit-learn package")
    p.add_argument('--work-dir', help='where to make the scratch directory (default: the system temporary directory)')
    return p

def main(argv=None) -> int:
    a = parser().parse_args(argv)
    run_all(a.run, a.out, a.data, a.duration, tuple(int(c) for c in a.connections.split(',')), a.threads, a.n_single, a.warmup,
            a.cold_runs, a.clean_runs, tuple(s.strip() for s in a.only.split(',') if s.strip()), a.reports_dir, a.work_dir, a.tool,
            not a.no_seed_package)
    print(f"results: {a.out}/results.json, {a.out}/results.md")
    return 0

if __name__ == '__main__': sys.exit(main())
