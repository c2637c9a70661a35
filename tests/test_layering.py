"""The package's layers, read from the source: each imports only from the layers below it, so that a model can be
used without the trainer, the trainer without the commands, and nothing imports upwards into a cycle.

  errors, cli, losses, metrics, workdir     the leaves (cli: every command's flag parsing, data/build's too)
  models/                                   the nets and their one input scale
  data/                                     datasets, splits, the input pipeline
  train/                                    state, steps, parallelism, checkpoints, the loop
  stages/                                   what each stage trains (reads train/, data/, models/)
  experiment, results, kfold, main, the commands
"""

import ast
import os

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, 'fn2en_jax')
LEAVES = {'errors', 'cli', 'losses', 'metrics', 'workdir'}
ALLOWED = {
    'models': LEAVES | {'models'},
    'data': LEAVES | {'models', 'data'},
    'train': LEAVES | {'models', 'data', 'train'},
    'stages': LEAVES | {'models', 'data', 'train', 'stages'},
}


def _imported(path: str) -> set[str]:
  """The first component below fn2en_jax of every fn2en_jax module the file imports (at any depth)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'fn2en_jax':
      parts = node.module.split('.')
      names.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
    elif isinstance(node, ast.Import):
      names.update(a.name.split('.')[1] for a in node.names if a.name.startswith('fn2en_jax.'))
  return names


@pytest.mark.parametrize('layer', sorted(ALLOWED))
def test_a_layer_imports_only_from_the_layers_below_it(layer):
  for root, _, files in os.walk(os.path.join(PACKAGE, layer)):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        upward = _imported(path) - ALLOWED[layer]
        assert not upward, f'{os.path.relpath(path, REPO)} imports {sorted(upward)}, above its layer {layer}/'


def test_the_leaves_import_no_other_part_of_the_package():
  for leaf in LEAVES:
    assert _imported(os.path.join(PACKAGE, f'{leaf}.py')) <= {'errors'}, leaf


def test_the_check_sees_an_upward_import(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text('from fn2en_jax.train import checkpoint\nimport fn2en_jax.stages.a\nfrom fn2en_jax import evaluate\n')
  assert _imported(str(path)) == {'train', 'stages', 'evaluate'}
