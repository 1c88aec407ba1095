"""The docs have no dangling references: every relative Markdown link of
README.md, docs/ and experiments/ points at a file (and a heading) that
exists, and every repository path the docs or the code's comments name
(``tools/...py``, ``configs/...py``, ``docs/...md``, ...) is in the tree.
Text only: nothing is imported or built."""
import glob
import itertools
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MARKDOWN = sorted(
    [osp.join(ROOT, 'README.md')] +
    glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True) +
    glob.glob(osp.join(ROOT, 'experiments', '**', '*.md'), recursive=True))
CODE = sorted(
    path for folder in ('cait_mm', 'tools', 'tests', 'experiments', 'configs')
    for path in glob.glob(osp.join(ROOT, folder, '**', '*.py'),
                          recursive=True)
    if path != osp.abspath(__file__))

# [text](target) and ![alt](target); the target up to a space or ')'
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
# a repository path: a known top folder, then path characters, a known end;
# {a,b} alternatives and {name} placeholders allowed
PATH = re.compile(r'(?<![\w./$-])((?:cait_mm|configs|docs|experiments|tests|'
                  r'tools)/[\w./{},*-]*?\.(?:py|md|sh|png|jpg))(?![\w/])')


def rel(path):
    return osp.relpath(path, ROOT)


def expand(pattern):
    """``a_{x,y}.py`` -> ``a_x.py``, ``a_y.py``; ``{name}`` -> ``*``."""
    parts = re.split(r'(\{[^}]*\})', pattern)
    choices = [p[1:-1].split(',') if p.startswith('{') and ',' in p else
               ['*'] if p.startswith('{') else [p] for p in parts]
    return [''.join(c) for c in itertools.product(*choices)]


def exists(path):
    """A repository path (glob patterns: at least one match) exists."""
    if '*' in path:
        return bool(glob.glob(osp.join(ROOT, path)))
    return osp.exists(osp.join(ROOT, path))


def anchors(md_file):
    """GitHub's heading anchors of a Markdown file."""
    with open(md_file, encoding='utf-8') as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    slugs = set()
    for heading in re.findall(r'^#+\s+(.*?)\s*#*$', text, flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')
        slugs.add(slug)
    return slugs


def repo_paths(text):
    for match in PATH.finditer(text):
        for path in expand(match.group(1).rstrip('.')):
            yield path


@pytest.mark.parametrize('md', MARKDOWN, ids=rel)
def test_markdown_links_resolve(md):
    with open(md, encoding='utf-8') as f:
        text = f.read()
    dangling = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        path = osp.normpath(osp.join(osp.dirname(md), path)) if path else md
        if not exists(rel(path)):
            dangling.append(target)
        elif anchor and path.endswith('.md') and osp.exists(path) \
                and anchor not in anchors(path):
            dangling.append(f'{target} (no such heading)')
    assert not dangling, f'{rel(md)}: links to nothing: {dangling}'


@pytest.mark.parametrize('md', MARKDOWN, ids=rel)
def test_markdown_paths_exist(md):
    with open(md, encoding='utf-8') as f:
        text = f.read()
    missing = sorted({p for p in repo_paths(text) if not exists(p)})
    assert not missing, f'{rel(md)} names paths that do not exist: {missing}'


def test_code_names_existing_docs():
    """Comments and docstrings that point at the docs point at a file."""
    missing = []
    for path in CODE:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        missing += [f'{rel(path)}: {p}' for p in repo_paths(text)
                    if p.endswith('.md') and not exists(p)]
        if 'DESIGN.md' in text:
            missing.append(f'{rel(path)}: DESIGN.md (not in the repository)')
    assert not missing, missing


def test_the_checks_see_what_they_check():
    """The patterns find what the docs write."""
    assert LINK.findall('see [a](guides/atme.md#schedules) and '
                        '![p](img/x.png)') == ['guides/atme.md#schedules',
                                               'img/x.png']
    assert list(repo_paths('`tools/train.py` and configs/upernet/'
                           'upernet_{deit,cait}_s_ade20k.py.')) == [
        'tools/train.py', 'configs/upernet/upernet_deit_s_ade20k.py',
        'configs/upernet/upernet_cait_s_ade20k.py']
    assert list(repo_paths('$U/upernet_deit_s_ade20k.py')) == []
    assert exists('configs/upernet/upernet_*_t_membrane_cpu.py')
    assert not exists('tools/real_data_experiment.py')
    assert 'the-hot-path' in anchors(osp.join(ROOT, 'docs', 'guides',
                                              'design.md'))
