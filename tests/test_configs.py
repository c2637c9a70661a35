"""Every config in configs/: it loads, its docstring's run command parses and validates, it states the paper's
protocol and numbers; and the protocols split the fixture datasets exactly (TFD's official folds, SFEW with
FER2013 as extra training data)."""

import glob
import importlib.util
import os
import re
import shlex
import types

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest

import fixtures_datasets as fx
from fn2en_jax import experiment
from fn2en_jax.data import pipeline
from fn2en_jax.models import face_nets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/bench.py configures `python -m fn2en_jax.bench`, not an experiment (tests/test_bench.py has it).
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', '*.py')) if not p.endswith('bench.py'))
BASIC7 = ('anger', 'disgust', 'fear', 'happy', 'sadness', 'surprise', 'neutral')
# The paper's tables (docs/design.md), typed in here independently of the configs.
PAPER = {'ck_plus': {'scratch': 88.7, 'face': 89.9, 'fn2en': 96.8}, 'ck_plus_6': {'fn2en': 98.6},
         'oulu_casia': {'scratch': 76.87, 'face': 83.26, 'fn2en': 87.71},
         'tfd': {'scratch': 82.5, 'face': 86.7, 'fn2en': 88.9},
         'sfew': {'scratch': 39.55, 'face': 41.23, 'fn2en': 48.19}, 'sfew_fer2013': {'fn2en': 55.15},
         'ck_plus_48': {}}
# (data.name, data.config, protocol, num_folds, eval_split, extra_train) of each paper row.
PROTOCOLS = {'ck_plus': ('ck_plus', '8class', 'subject_folds', 10, '', ()),
             'ck_plus_6': ('ck_plus', '6class', 'subject_folds', 10, '', ()),
             'oulu_casia': ('oulu_casia', 'vl_strong', 'subject_folds', 10, '', ()),
             'tfd': ('tfd', '96x96', 'tfd_folds', 5, '', ()),
             'sfew': ('sfew', '', 'subject_folds', 10, 'validation', ()),
             'sfew_fer2013': ('sfew', '', 'subject_folds', 10, 'validation', ('fer2013:train',)),
             'ck_plus_48': ('ck_plus_48', '', 'subject_folds', 10, '', ())}


def _name(path):
  return os.path.splitext(os.path.basename(path))[0]


def _module(path):
  spec = importlib.util.spec_from_file_location(f'config_{_name(path)}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run_command(doc: str, name: str) -> str:
  """The docstring's `python -m fn2en_jax.main` command, its continuation lines joined."""
  joined = re.sub(r'\\\n\s*', '', doc)
  commands = [line.strip() for line in joined.splitlines()
              if line.strip().startswith(f'python -m fn2en_jax.main --config=configs/{name}.py')]
  assert commands, f'configs/{name}.py: no run command in its docstring'
  return commands[0]


def _parse(command: str, home: str):
  """The config that `command` (the docstring's, with $HOME replaced) builds, parsed as main's flags are."""
  argv = ['main', *shlex.split(command.replace('$HOME', home))[3:]]
  flag_values = flags.FlagValues()
  # config_flags reads the --config.* overrides from the whole command line (sys.argv unless given).
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  flags.DEFINE_string('workdir', None, 'workdir', flag_values=flag_values)
  cwd = os.getcwd()
  os.chdir(REPO)  # the commands name configs/... relative to the repository, as a user runs them
  try:
    flag_values(argv)
  finally:
    os.chdir(cwd)
  assert flag_values.workdir
  return flag_values.config


@pytest.mark.parametrize('path', CONFIGS, ids=_name)
def test_config_run_command_parses_and_validates(path, tmp_path):
  name = _name(path)
  module = _module(path)
  assert module.__doc__, f'{path} has no docstring'
  command = _run_command(module.__doc__, name)
  config = _parse(command, str(tmp_path))
  if config.teacher.init:  # the command names a converted face net: put one (its description) there
    face_nets.write_meta(config.teacher.init, config.teacher.model, face_nets.model_kwargs(config.teacher),
                         config.data.image_size)
  experiment.validate(config)
  if name != 'demo':
    assert 'python -m fn2en_jax.data.build' in module.__doc__
    assert tuple(config.stages) == ('face', 'a', 'b', 'scratch')
    # The input size of the face net's training: VGG-Face 224, dlib's ResNet 150.
    assert config.dtype == 'float32'
    # ck_plus_48_dlib trades the dlib net's 150 for 80, the smallest input it takes, to fit 2 CPU cores.
    expected_size = 80 if name == 'ck_plus_48_dlib' else {'vgg_face': 224, 'dlib_resnet': 150}[config.teacher.model]
    assert config.data.image_size == expected_size
    assert config.teacher.init, 'the run command of a real dataset must name a face net'


@pytest.mark.parametrize('name', sorted(PROTOCOLS))
def test_paper_configs_state_the_protocol_and_the_papers_numbers(name):
  config = _module(os.path.join(REPO, 'configs', f'{name}.py')).get_config()
  data = config.data
  assert (data.name, data.config, data.protocol, data.num_folds, data.eval_split,
          tuple(data.extra_train)) == PROTOCOLS[name]
  assert config.paper.to_dict() == PAPER[name]


@pytest.mark.parametrize('name', sorted(PROTOCOLS))
def test_a_missing_face_net_fails_early_and_says_how_to_get_one(name):
  config = _module(os.path.join(REPO, 'configs', f'{name}.py')).get_config()
  with pytest.raises(ValueError, match='teacher.init') as error:
    experiment.validate(config)
  assert 'python -m fn2en_jax.convert vgg_face' in str(error.value) and 'docs/face_nets.md' in str(error.value)
  # ... unless the face net is trained here, on an identity dataset.
  config.stages = ('face_pretrain',) + tuple(config.stages)
  config.face_data.name = 'my_identities'
  experiment.validate(config)


def _sfew_scratch():
  config = _module(os.path.join(REPO, 'configs', 'sfew.py')).get_config()
  config.teacher.init = ''
  config.stages = ('scratch',)
  return config


@pytest.mark.parametrize('change, message', [
    (dict(protocol='tfd_folds'), 'data.protocol'),
    (dict(fold=-1), 'fold=-1'),
    (dict(eval_split='', protocol='tfd_folds'), 'num_folds must be 5'),
    (dict(eval_split='', fold=10), r'data.fold must be in \[0, 10\)'),
    (dict(eval_split='', num_folds=1, fold=0), 'num_folds must be >= 2'),
    (dict(protocol='leave_one_out'), 'data.protocol must be one of'),
    (dict(extra_train=('fer2013',)), "data.extra_train: 'fer2013' is not 'name\\[/config\\]:split'"),
    (dict(extra_train=('fer2013/a/b:train',)), 'data.extra_train'),
])
def test_protocol_fields_are_validated(change, message):
  config = _sfew_scratch()
  config.data.update(change)
  with pytest.raises(ValueError, match=message):
    experiment.validate(config)


def test_face_pretrain_needs_an_identity_dataset():
  config = _sfew_scratch()
  config.stages = ('face_pretrain', 'face')
  with pytest.raises(ValueError, match='face_data.name'):
    experiment.validate(config)


@pytest.fixture
def data_dir(tmp_path):
  return str(tmp_path / 'tfds')


def _rows(examples: pipeline.Examples) -> list[tuple[str, str]]:
  return sorted((s, examples.class_names[l]) for s, l in zip(examples.subjects, examples.labels))


@pytest.mark.parametrize('valid_in_train', [True, False])
def test_tfd_official_folds_split_exactly(tmp_path, data_dir, valid_in_train):
  fx.write_tfd(tmp_path / 'tfd', 48, np.random.default_rng(0))
  config = _module(os.path.join(REPO, 'configs', 'tfd.py')).get_config()
  config.data.update(dict(config='48x48', manual_dir=str(tmp_path / 'tfd'), tfd_valid_in_train=valid_in_train))
  labelled = np.flatnonzero(fx.TFD_LABS_EX != -1)
  # (subject, label) is unique per labelled fixture row, so it names the row.
  row = {i: (str(fx.TFD_LABS_ID[i]), BASIC7[fx.TFD_LABS_EX[i] - 1]) for i in labelled}
  train_codes = (1, 2) if valid_in_train else (1,)
  for fold in range(5):
    config.data.fold = fold
    train, validation, test = pipeline.splits(config.data, data_dir)
    if valid_in_train:  # the validation subjects are carved from the fold's training rows (codes 1 and 2)
      assert sorted(_rows(train) + _rows(validation)) == sorted(
          row[i] for i in labelled if fx.TFD_FOLDS[i, fold] in train_codes)
      assert not set(train.subjects) & set(validation.subjects)
    else:  # TFD's own valid rows (code 2) are the validation set
      assert _rows(train) == sorted(row[i] for i in labelled if fx.TFD_FOLDS[i, fold] == 1)
      assert _rows(validation) == sorted(row[i] for i in labelled if fx.TFD_FOLDS[i, fold] == 2)
    assert _rows(test) == sorted(row[i] for i in labelled if fx.TFD_FOLDS[i, fold] == 3)
    assert (test.fold_codes[:, fold] == 3).all()
    assert set(train.fold_codes[:, fold]) <= set(train_codes)


def test_tfd_folds_on_a_dataset_without_them_fail_clearly(tmp_path, data_dir):
  fx.write_ck_plus_48(tmp_path / 'ck48', np.random.default_rng(0))
  config = _module(os.path.join(REPO, 'configs', 'ck_plus_48.py')).get_config()
  config.data.update(dict(manual_dir=str(tmp_path / 'ck48'), protocol='tfd_folds', num_folds=5))
  with pytest.raises(ValueError, match="needs TFD's official folds"):
    pipeline.splits(config.data, data_dir)


def test_sfew_with_fer2013_extra_training_data(tmp_path, data_dir):
  rng = np.random.default_rng(0)
  sfew = fx.write_sfew(tmp_path / 'sfew', rng)
  fer_rows = fx.fer2013_rows(rng)
  fx.write_fer2013(tmp_path / 'fer2013', fer_rows)
  config = _module(os.path.join(REPO, 'configs', 'sfew_fer2013.py')).get_config()
  config.data.update(dict(manual_dir=str(tmp_path / 'sfew'), extra_manual_dir=str(tmp_path / 'fer2013')))
  train, validation, test = pipeline.splits(config.data, data_dir)
  # FER2013's subject is its CSV line: the header is line 1.
  fer_train = [(f'line{i + 2:05d}', BASIC7[int(emotion)]) for i, (emotion, _, usage) in enumerate(fer_rows)
               if usage == 'Training']
  # The validation subjects come from SFEW's own training part; the extra data only ever trains.
  assert sorted(_rows(train) + _rows(validation)) == sorted(sfew['train'] + fer_train)
  assert set(_rows(validation)) <= set(sfew['train']) and set(fer_train) <= set(_rows(train))
  assert _rows(test) == sorted(sfew['validation'])
  # The concatenated source serves each example's own record: SFEW's 224x224 faces, then FER2013's 48x48 ones.
  sizes = [train[i]['image'].shape[0] for i in range(len(train))]
  assert sizes == [224] * (len(sfew['train']) - len(validation)) + [48] * len(fer_train)
  assert [train[i]['label'] for i in range(len(train))] == list(train.labels)
  config.data.image_size = 32
  batch = next(pipeline.train_iterator(train, config.data, global_batch_size=len(train), seed=0))
  assert batch['image'].shape == (len(train), 32, 32, 3)
  assert sorted(batch['label']) == sorted(train.labels)  # one epoch, shuffled: every example once


def test_extra_training_data_with_other_labels_fails_clearly(tmp_path, data_dir):
  rng = np.random.default_rng(0)
  fx.write_sfew(tmp_path / 'sfew', rng)
  fx.write_ck_plus_48(tmp_path / 'ck48', rng)
  config = _module(os.path.join(REPO, 'configs', 'sfew.py')).get_config()
  config.data.update(dict(manual_dir=str(tmp_path / 'sfew'), extra_manual_dir=str(tmp_path / 'ck48'),
                          extra_train=('ck_plus_48:train',)))
  with pytest.raises(ValueError, match=r"data.extra_train: 'ck_plus_48:train' has the labels \['anger', "
                                       r"'contempt'.*must match exactly"):
    pipeline.splits(config.data, data_dir)


def test_each_stage_declares_its_role_and_the_commands_read_it_from_there():
  from fn2en_jax import predictor as predictor_lib, results, stages  # pylint: disable=g-import-not-at-top
  for name, module in stages.STAGES.items():
    assert isinstance(module.ROLE, stages.Role), name
    assert module.ROLE.net in ('student', 'face_net') and module.ROLE.classifies in ('expressions', 'identities', None)
  # The paper's table, in its order: the two baselines, then the method.
  assert stages.rows() == (('Train from scratch (BN)', 'scratch'), ('Face net fine-tune (baseline)', 'face'),
                           ('FN2EN', 'b'))
  assert set(predictor_lib.STAGES) == {'b', 'scratch', 'face'} and predictor_lib.STAGES[0] == 'b'  # the --stage default first
  assert stages.students() == ('b', 'scratch')
  assert set(stages.classifiers()) == {'face_pretrain', 'face', 'b', 'scratch'}  # stage a regresses
  summary = {'accuracy': 0.5, 'mean_per_class_accuracy': 0.25}
  table = results.results_table({'b': summary, 'scratch': summary}).splitlines()
  assert [line.split(' | ')[0] for line in table[2:]] == ['| Train from scratch (BN)', '| FN2EN']
  for path in CONFIGS:  # every row a config compares with the paper is a row some stage fills
    assert set(_module(path).get_config().get('paper', {})) <= set(stages.paper_keys().values()), path


def test_a_new_stage_is_its_module_and_a_registry_entry(monkeypatch):
  """A throwaway stage, registered the way stages/__init__.py registers the real ones: the table, the k-fold
  report's rows, the paper's keys and the lists the commands offer (predict's and export's nets, visualize's
  students) take it up from its Role alone, with no other file edited."""
  from fn2en_jax import kfold, stages  # pylint: disable=g-import-not-at-top
  from fn2en_jax import results  # pylint: disable=g-import-not-at-top
  role = stages.Role('student', 'expressions', row='FN2EN, variant c', paper_key='fn2en_c', rank=3)
  monkeypatch.setitem(stages.STAGES, 'c', types.SimpleNamespace(NAME='c', READS='a', ROLE=role))
  assert stages.rows()[-1] == ('FN2EN, variant c', 'c')
  assert stages.expression_nets()[0] == 'c' and 'c' in stages.students() and 'c' in stages.classifiers()
  assert stages.paper_keys()['c'] == 'fn2en_c'
  assert stages.order_errors(('c', 'a')) == ["'c' reads the checkpoint of 'a', so it must come after it"]
  summary = {'accuracy': 0.5, 'mean_per_class_accuracy': 0.25, 'num_examples': 4}
  assert '| FN2EN, variant c | 50.00 | 25.00 |' in results.results_table({'c': summary, 'b': summary})
  config = _module(CONFIGS[0]).get_config()
  report = kfold.summarize([{'c': summary, 'b': summary}] * 2, {'fn2en_c': 97.0}, config)
  assert list(report['rows'])[-1] == 'FN2EN, variant c'
  assert report['rows']['FN2EN, variant c']['paper_accuracy'] == pytest.approx(0.97)
