"""The offline half of `nbdev_docs`, for CI: process every notebook into _proc/ as the docs build does (show_doc API
entries rendered, directives applied) without Quarto, and fail on any error. `nbdev_proc_nbs` itself would try to
install Quarto with sudo and pip-install the project globally when Quarto is missing, so its steps are called here."""
import os, shutil, sys, time
from nbdev.config import get_config
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

def main(n_workers:int=2) -> int:
    # nbdev warns about every test cell that imports and tests at once; those cells run fine, so keep CI's log short
    os.environ['PYTHONWARNINGS'] = 'ignore:Found cells containing imports'
    t0, cfg = time.time(), get_config()
    shutil.rmtree(cfg.config_path/'_proc', ignore_errors=True)
    refresh_quarto_yml()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    proc_nbs(cfg.nbs_path, n_workers=n_workers, force=True)
    nbs = sorted(p.name for p in cfg.nbs_path.glob('*.ipynb'))
    done = {p.name for p in (cfg.config_path/'_proc').glob('*.ipynb')}
    missing = [n for n in nbs if n not in done]
    if missing:
        print(f"docs-check: not processed: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"docs-check: {len(done)} notebooks processed into _proc/ in {time.time() - t0:.0f} s "
          "(show_doc API pages rendered; `make docs` renders them with Quarto)")
    return 0

if __name__ == '__main__': sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
