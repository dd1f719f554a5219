"""Packaging for fraud-lambda, driven by settings.ini (nbdev 2). No pkg_resources."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _reqs(key):
    "Space-separated requirement list from settings.ini"
    return cfg.get(key, '').split()

licenses = {'apache2': 'Apache-2.0'}
readme = Path(__file__).parent/'README.md'

setuptools.setup(
    name=cfg['repo'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else cfg['description'],
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=licenses[cfg['license']],
    classifiers=['Development Status :: 3 - Alpha', 'Intended Audience :: Developers',
                 'Programming Language :: Python :: 3',
                 'Programming Language :: Python :: 3.11', 'Programming Language :: Python :: 3.12'],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['fraud_lambda', 'fraud_lambda.*']),
    include_package_data=True,
    package_data={'fraud_lambda': ['py.typed', 'assets/*']},
    install_requires=_reqs('requirements'),
    extras_require={'aws': _reqs('aws_requirements'),
                    'research': _reqs('research_requirements'),
                    'dev': _reqs('dev_requirements'),
                    'docs': _reqs('docs_requirements')},
    python_requires='>=' + cfg['min_python'],
    zip_safe=False,
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    keywords=cfg['keywords'],
)
