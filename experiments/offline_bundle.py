"""Take the experiments to a machine that has torch but no network: what
the product needs beyond that machine's own packages, as wheels for its
Python, and their installation there.

    # here, in a checkout after `make install` (the package index reachable)
    python experiments/offline_bundle.py build .offline \\
        [--python-version 3.12] [--have experiments/device_packages.txt]
    # there, with the checkout and .offline (git ignores it) copied along
    python3 experiments/offline_bundle.py install .offline --target /tmp/site
    export PYTHONPATH=/tmp/site:$PWD
    python3 experiments/runner.py experiments/gpu_speed.py --out-dir ...

``build`` walks the requirements of requirements.txt and mmcv through
this environment's installed metadata (so the versions are the ones tested
here), stops at every distribution the target has (``--have``: one name
per line; the default lists the lent GPU machines' image) and fetches each
of the others as a wheel for the target's Python and platform; a
pure-Python one with no such wheel on the index is built here.

mmcv 2.1.0 has no wheel, and its compiled ops take a compiler and most of
an hour: the bundle's mmcv is built without them, and its ``mmcv._ext``
(which mmcv.ops loads, and mmseg and mmdet import mmcv.ops when they
load) raises when an op is called. Nothing the GPU check runs calls one
(ViT, UperNet, the benchmark, tools/test.py); Mask R-CNN's RoIAlign and
NMS would, and say so.

``install`` installs the wheels with pip (no index, no dependencies) into
``--target`` and imports each of them there, so a missing piece shows
before an experiment starts, not in the middle of it.
"""
import argparse
import glob
import importlib.metadata as metadata
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import (Callable, Dict, Iterable, Iterator, List, Optional, Set,
                    Tuple)

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEVICE_PACKAGES = osp.join(REPO, 'experiments', 'device_packages.txt')
#: distributions that install the same modules under another name: a
#: target with one of them needs no other (opencv-python's wheel alone is
#: larger than what a device run may carry)
SAME_MODULES = {
    'opencv-python': ('opencv-python-headless', 'opencv-contrib-python',
                      'opencv-contrib-python-headless'),
}
MMCV = 'mmcv'
#: what ``mmcv._ext`` is in the bundle: every op is there by name, as
#: mmcv.ops' loader checks, and each raises when called
MMCV_EXT = '''"""mmcv built without its compiled ops
(experiments/offline_bundle.py): an op fails when called, not when mmcv.ops
is imported."""


def __getattr__(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise RuntimeError(
            f'mmcv op {name!r} is not in this bundle: it was built without '
            'compiled ops (experiments/offline_bundle.py); install mmcv '
            'with its ops (make install) to run models that use them')

    missing.__name__ = name
    return missing
'''
#: what ``install`` imports to check the bundle on the target (cait_mm
#: first, as every tool does: it leaves out what would not import)
IMPORTS = ('cait_mm', 'mmengine', 'mmcv', 'mmcv.ops', 'mmseg', 'mmseg.models',
           'mmdet', 'mmdet.models', 'mmpretrain', 'mmpretrain.models')


def _content_lines(path: str) -> Iterator[str]:
    """The lines of a list or requirements file, ``#`` comments and
    ``-`` lines (pip options, pip list's rule) left out."""
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                yield line


def read_names(path: str) -> Set[str]:
    """Canonical distribution names of a list: one a line, ``#`` comments,
    anything after ``==`` or a space ignored (``pip list --format=freeze``
    or ``pip list`` output works too)."""
    names = {canonicalize_name(re.split(r'[\s=<>!~;\[]', line)[0])
             for line in _content_lines(path)}
    names.discard(canonicalize_name('Package'))  # pip list's header
    return names


def requirement_names(path: str) -> List[str]:
    """The distributions a requirements file names."""
    return [Requirement(line).name for line in _content_lines(path)]


def _major_minor(python_version: str) -> str:
    return '.'.join(python_version.split('.')[:2])


def _marker_env(python_version: str) -> Dict[str, str]:
    major_minor = _major_minor(python_version)
    full = python_version if python_version.count('.') == 2 else \
        f'{major_minor}.0'
    return dict(python_version=major_minor, python_full_version=full,
                extra='')


def closure(roots: Iterable[str], have: Set[str], python_version: str,
            dist: Optional[Callable[[str], Tuple[str, List[str]]]] = None
            ) -> Dict[str, str]:
    """The distributions the roots need that the target lacks.

    Args:
        roots: Distribution names.
        have: Canonical names of what the target has; the walk stops at
            them (the target brought their needs along).
        python_version: The target's, for environment markers (extras are
            not followed).
        dist: ``name -> (version, requirement strings)`` of the installed
            distribution; this environment's metadata by default.

    Returns:
        dict: canonical name -> installed version, sorted by name.
    """
    if dist is None:
        def dist(name):
            d = metadata.distribution(name)
            return d.version, d.requires or []
    env = _marker_env(python_version)
    found: Dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found or name in have or any(
                alt in have for alt in SAME_MODULES.get(name, ())):
            continue
        try:
            version, requires = dist(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f'{name} is needed but not installed here: run '
                             '`make install` first') from None
        found[name] = version
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return dict(sorted(found.items()))


def platforms(max_glibc_minor: int = 39) -> List[str]:
    """pip's ``--platform`` tags for an x86-64 Linux target (pip matches a
    manylinux tag exactly, so every glibc minor is named)."""
    tags = [f'manylinux_2_{m}_x86_64'
            for m in range(max_glibc_minor, 16, -1)]
    return tags + ['manylinux2014_x86_64', 'manylinux1_x86_64']


def _pip(*args: str, cwd: Optional[str] = None,
         env: Optional[Dict[str, str]] = None) -> None:
    """pip, its output shown only if it fails (a build's warnings would
    bury the bundle's own lines)."""
    done = subprocess.run([sys.executable, '-m', 'pip', *args, '--quiet',
                           '--disable-pip-version-check'], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if done.returncode:
        print(done.stdout, file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, done.args)


def _new_wheel(out: str, before: Set[str], what: str) -> str:
    """The one file that appeared in ``out`` since it held ``before``."""
    new = sorted(set(os.listdir(out)) - before)
    if len(new) != 1:
        raise SystemExit(f'{what}: expected one wheel, got {new}')
    return new[0]


def fetch_wheel(name: str, version: str, python_version: str,
                out: str) -> str:
    """The wheel of ``name==version`` for the target, from the index, or
    built here if it is pure Python and the index has only its source."""
    out = osp.abspath(out)
    before = set(os.listdir(out))
    pin = f'{name}=={version}'
    tag = _major_minor(python_version).replace('.', '')
    try:
        _pip('download', '--no-deps', '--only-binary=:all:',
             '--python-version', python_version, '--implementation', 'cp',
             '--abi', f'cp{tag}', '--abi', 'abi3', '--abi', 'none',
             *[a for p in platforms() for a in ('--platform', p)],
             '--platform', 'any', '-d', out, pin)
    except subprocess.CalledProcessError:
        with tempfile.TemporaryDirectory() as tmp:
            _pip('wheel', '--no-deps', '--no-binary', name, '-w', tmp, pin)
            built = glob.glob(osp.join(tmp, '*.whl'))
            if len(built) != 1 or not built[0].endswith('-none-any.whl'):
                raise SystemExit(
                    f'{pin} has no wheel for Python {python_version} on the '
                    f'index, and its source builds a compiled wheel here '
                    f'({[osp.basename(b) for b in built]}): build it on a '
                    f'machine with that Python') from None
            shutil.copy(built[0], out)
    return _new_wheel(out, before, pin)


def build_mmcv(version: str, out: str) -> str:
    """mmcv's wheel, pure Python: its source built without ops (named
    mmcv, not mmcv-lite, so mmseg's and mmdet's checks find it) and with
    :data:`MMCV_EXT` as ``mmcv._ext``."""
    out = osp.abspath(out)
    before = set(os.listdir(out))
    with tempfile.TemporaryDirectory() as tmp:
        _pip('download', '--no-deps', '--no-binary', ':all:',
             '--no-build-isolation', f'{MMCV}=={version}', '-d', tmp)
        with tarfile.open(osp.join(tmp, f'{MMCV}-{version}.tar.gz')) as tar:
            tar.extractall(tmp, filter='data')
        src = osp.join(tmp, f'{MMCV}-{version}')
        setup = osp.join(src, 'setup.py')
        with open(setup) as f:
            text = f.read()
        lite = "name='mmcv' if os.getenv('MMCV_WITH_OPS', '1') == '1' " \
            "else 'mmcv-lite'"
        if lite not in text:
            raise SystemExit(f'mmcv {version}: its setup.py no longer names '
                             'the lite build as this script expects')
        with open(setup, 'w') as f:
            f.write(text.replace(lite, "name='mmcv'"))
        with open(osp.join(src, 'mmcv', '_ext.py'), 'w') as f:
            f.write(MMCV_EXT)
        _pip('wheel', '--no-deps', '--no-build-isolation', '-w', out, '.',
             cwd=src, env=dict(os.environ, MMCV_WITH_OPS='0'))
    return _new_wheel(out, before, f'{MMCV}=={version}')


def build(out: str, python_version: str, have_file: str) -> Dict:
    """Write the wheels and ``bundle.json`` (what was built, for which
    target) into ``out``; an existing bundle there is replaced."""
    python_version = _major_minor(python_version)  # what install compares
    have = read_names(have_file)
    needed = closure(
        requirement_names(osp.join(REPO, 'requirements.txt')) + [MMCV], have,
        python_version)
    tmp = f'{out}.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    wheels = {}
    for name, version in needed.items():
        wheels[name] = build_mmcv(version, tmp) if name == MMCV else \
            fetch_wheel(name, version, python_version, tmp)
        print(f'{name}=={version}: {wheels[name]}', flush=True)
    manifest = dict(python_version=python_version,
                    have=osp.relpath(have_file, REPO), wheels=wheels)
    with open(osp.join(tmp, 'bundle.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    size = sum(osp.getsize(osp.join(out, f)) for f in os.listdir(out))
    print(f'{out}: {len(wheels)} wheels, {size / 2**20:.1f} MiB')
    return manifest


def install(bundle: str, target: str) -> None:
    """pip-install the bundle into ``target``, then import each package
    from there (with the checkout, for cait_mm) in a fresh interpreter."""
    with open(osp.join(bundle, 'bundle.json')) as f:
        manifest = json.load(f)
    running = '.'.join(map(str, sys.version_info[:2]))
    if running != manifest['python_version']:
        raise SystemExit(f'{bundle} holds wheels for Python '
                         f"{manifest['python_version']}, this is {running}: "
                         f'build it with --python-version {running}')
    wheels = [osp.join(bundle, w) for w in manifest['wheels'].values()]
    _pip('install', '--no-index', '--no-deps', '--no-compile',
         '--no-cache-dir', '--upgrade', '--target', target, *wheels)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [osp.abspath(target), REPO]))
    code = ';'.join(f'import {m}' for m in IMPORTS)
    subprocess.run([sys.executable, '-c', code], check=True, env=env,
                   cwd=REPO)
    print(f'installed {len(wheels)} wheels into {target}; every package '
          'imports. Now:\n'
          f'export PYTHONPATH={osp.abspath(target)}:{REPO}')


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    b = sub.add_parser('build', help='write the wheels (here)')
    b.add_argument('out', help='the bundle folder, e.g. .offline')
    b.add_argument('--python-version', default='3.12',
                   help="the target's Python, major.minor (default: 3.12, "
                   "the lent GPU machines')")
    b.add_argument('--have', default=DEVICE_PACKAGES,
                   help="the target's distributions, one a line (default: "
                   'the lent GPU machines\' image)')
    i = sub.add_parser('install', help='install the wheels (there)')
    i.add_argument('bundle')
    i.add_argument('--target', required=True,
                   help='where the packages go (then on PYTHONPATH)')
    args = parser.parse_args(argv)
    if args.command == 'build':
        build(args.out, args.python_version, args.have)
    else:
        install(args.bundle, args.target)


if __name__ == '__main__':
    main()
