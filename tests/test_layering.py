"""The package's layers, read from the source: each imports only from the layers below it, so that a model can be
used without the trainer, the trainer without the commands, and nothing imports upwards into a cycle.

  errors, cli, losses, metrics, workdir     the leaves (cli: every command's flag parsing, data/build's too)
  models/                                   the nets and their one input scale
  data/                                     datasets, splits, the input pipeline
  train/                                    state, steps, parallelism, checkpoints, the loop
  stages/                                   what each stage trains (reads train/, data/, models/)
  experiment, results, kfold, predictor     running a config, its results, the k-fold report, a trained net's use
  commands/, main                           the command lines (the modules of the same names at the package root
                                            only forward to commands/); nothing else imports them
"""

import ast
import importlib
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
# Every command but kfold has a module of its name at the package root that forwards to it (fn2en_jax/kfold.py is
# the k-fold report's library, which runs its command when run itself).
COMMANDS = {n[:-3] for n in os.listdir(os.path.join(PACKAGE, 'commands')) if n.endswith('.py') and n[0] != '_'}
FORWARDERS = COMMANDS - {'kfold'}


def _is_main_block(node) -> bool:
  return isinstance(node, ast.If) and ast.unparse(node.test).replace('"', "'") == "__name__ == '__main__'"


def _imported(path: str, as_library: bool = False) -> set[str]:
  """The first component below fn2en_jax of every fn2en_jax module the file imports (at any depth); with
  `as_library`, what it imports when imported (its `if __name__ == '__main__':` block left out)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  if as_library:
    tree.body = [node for node in tree.body if not _is_main_block(node)]
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


def test_no_library_module_imports_a_command():
  for root, _, files in os.walk(PACKAGE):
    if os.path.relpath(root, PACKAGE).split(os.sep)[0] == 'commands':
      continue
    for name in files:
      path = os.path.join(root, name)
      if name.endswith('.py') and not (root == PACKAGE and name[:-3] in FORWARDERS):
        assert 'commands' not in _imported(path, as_library=True), os.path.relpath(path, REPO)


def test_each_forwarder_is_its_command():
  """`from fn2en_jax import predict` (a user's script of before the move) gets the command module itself; the
  command lines of the old names are run by the tests that start them (`python -m fn2en_jax.predict` ...)."""
  for name in sorted(FORWARDERS):
    old, new = importlib.import_module(f'fn2en_jax.{name}'), importlib.import_module(f'fn2en_jax.commands.{name}')
    assert old is new, name
  for name in sorted(COMMANDS):
    command = importlib.import_module(f'fn2en_jax.commands.{name}')
    assert callable(command.main), name


def test_the_leaves_import_no_other_part_of_the_package():
  for leaf in LEAVES:
    assert _imported(os.path.join(PACKAGE, f'{leaf}.py')) <= {'errors'}, leaf


def test_the_check_sees_an_upward_import(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text('from fn2en_jax.train import checkpoint\nimport fn2en_jax.stages.a\nfrom fn2en_jax import evaluate\n'
                  "if __name__ == '__main__':\n  from fn2en_jax.commands import kfold\n")
  assert _imported(str(path)) == {'train', 'stages', 'evaluate', 'commands'}
  assert _imported(str(path), as_library=True) == {'train', 'stages', 'evaluate'}
