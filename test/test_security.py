"""No code runs from data: the package, the training code and the launch files never call
eval / exec, a shell, pickle or unsafe YAML loaders, and load every torch file with
weights_only=True. A scan of the syntax trees (not of the text: `model.eval()` is fine)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ('seg_perception', 'training', 'launch')

# Dotted call names that run code or a shell, or unpickle.
FORBIDDEN_CALLS = {
    'eval', 'exec', 'compile', '__import__',
    'os.system', 'os.popen', 'os.execl', 'os.execle', 'os.execlp', 'os.execv', 'os.execve',
    'os.execvp', 'os.spawnl', 'os.spawnv', 'os.startfile',
    'pickle.load', 'pickle.loads', 'pickle.Unpickler', 'cPickle.load', 'cPickle.loads',
    'marshal.load', 'marshal.loads', 'shelve.open', 'dill.load', 'dill.loads',
    'cloudpickle.load', 'cloudpickle.loads', 'joblib.load',
    'yaml.load', 'yaml.load_all', 'yaml.unsafe_load', 'yaml.unsafe_load_all', 'yaml.full_load',
    'yaml.full_load_all', 'torch.jit.load', 'torch.package.PackageImporter',
}
UNSAFE_YAML_LOADERS = {'Loader', 'UnsafeLoader', 'FullLoader'}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f'{dotted(node.value)}.{node.attr}'
    return ''


def is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def findings(source: str, name: str = '<source>') -> list[str]:
    """Every unsafe construct in `source`, as 'name:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Attribute) and dotted(node.value) == 'yaml' and (
                node.attr in UNSAFE_YAML_LOADERS):
            found.append(f'{name}:{node.lineno}: yaml.{node.attr}')
        if not isinstance(node, ast.Call):
            continue
        call = dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        if call in FORBIDDEN_CALLS:
            found.append(f'{name}:{node.lineno}: {call}()')
        if 'shell' in keywords and not (isinstance(keywords['shell'], ast.Constant)
                                        and keywords['shell'].value is False):
            found.append(f'{name}:{node.lineno}: {call}(shell=...)')
        if call == 'torch.load' and not is_true(keywords.get('weights_only')):
            found.append(f'{name}:{node.lineno}: torch.load without weights_only=True')
        if call in ('np.load', 'numpy.load') and is_true(keywords.get('allow_pickle')):
            found.append(f'{name}:{node.lineno}: {call}(allow_pickle=True)')
    return found


def sources() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (REPO / folder).rglob('*.py'))


def test_the_package_training_and_launch_files_run_no_code_from_data():
    files = sources()
    assert len(files) > 40 and any(p.name.endswith('.launch.py') for p in files)
    bad = [f for path in files for f in findings(path.read_text(), str(path.relative_to(REPO)))]
    assert bad == []


def test_every_torch_load_says_weights_only():
    calls = [(path, line) for path in sources()
             for line in path.read_text().splitlines() if 'torch.load(' in line]
    assert calls, 'no torch.load at all: the scan looks in the wrong place'
    for path in {p for p, _ in calls}:
        tree = ast.parse(path.read_text())
        loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and dotted(n.func) == 'torch.load']
        assert loads and all(is_true({k.arg: k.value for k in n.keywords}.get('weights_only'))
                             for n in loads), path


@pytest.mark.parametrize('snippet', [
    'eval(params["expr"])',
    'exec(open(cfg).read())',
    'import os\nos.system("rm -rf " + path)',
    'subprocess.run(cmd, shell=True)',
    'subprocess.Popen(cmd, shell=flag)',
    'pickle.load(f)',
    'yaml.load(text)',
    'yaml.load(text, Loader=yaml.FullLoader)',
    'yaml.unsafe_load(text)',
    'torch.load(path)',
    'torch.load(path, weights_only=False)',
    'torch.load(path, weights_only=flag)',
    'torch.jit.load(path)',
    'np.load(path, allow_pickle=True)',
])
def test_the_scan_finds_each_unsafe_construct(snippet):
    assert findings(snippet), snippet


@pytest.mark.parametrize('snippet', [
    'model.eval()', 'yaml.safe_load(text)', 'torch.load(p, map_location="cpu", weights_only=True)',
    'subprocess.run(["ls", path], shell=False)', 'np.load(path)', 're.compile("x")',
])
def test_the_scan_lets_safe_code_through(snippet):
    assert findings(snippet) == []
