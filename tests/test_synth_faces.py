"""synth_faces: deterministic builds, exact counts and labels, subject-disjoint configs, argument checks, and
faces whose identity outweighs their expression."""

import collections
import itertools

import numpy as np
import pytest

from fn2en_jax.data import build
from fn2en_jax.data import render
from fn2en_jax.data.builders import synth_faces as sf

# Tiny configs: 6 subjects at 32x32 build in about a second each.
TINY = {
    'expressions': dict(image_size=32, num_subjects=6, intensities=2, neutral_per_subject=2),
    'identities': dict(image_size=32, num_subjects=6, images_per_subject=3),
}


def _build(tmp_path_factory, kind: str, **overrides):
  config = sf.make_config(kind, **{**TINY[kind], **overrides})
  data_dir = tmp_path_factory.mktemp(f'{kind}_data')
  return build.get_builder('synth_faces', data_dir=str(data_dir), config=config), data_dir


def _records(builder) -> list[dict]:
  source = builder.as_data_source()['train']
  records = []
  for i in range(len(source)):
    record = dict(source[i])
    records.append({k: v.decode() if isinstance(v, bytes) else v for k, v in record.items()})
  return records


@pytest.fixture(scope='module')
def expressions(tmp_path_factory):
  return _build(tmp_path_factory, 'expressions')


@pytest.fixture(scope='module')
def identities(tmp_path_factory):
  return _build(tmp_path_factory, 'identities')


def test_same_seed_gives_identical_files_in_two_builds(expressions, tmp_path_factory):
  _, first_dir = expressions
  _, second_dir = _build(tmp_path_factory, 'expressions')
  first = sorted(first_dir.rglob('*.array_record*'))
  second = sorted(second_dir.rglob('*.array_record*'))
  assert first and [p.name for p in first] == [p.name for p in second]
  for a, b in zip(first, second):
    assert a.read_bytes() == b.read_bytes(), a.name


def test_another_seed_gives_other_images():
  base = dict(sf.generate_examples(sf.make_config('expressions', **TINY['expressions'])))
  other = dict(sf.generate_examples(sf.make_config('expressions', **TINY['expressions'], seed=1)))
  assert base.keys() == other.keys()
  for key in base:
    assert not np.array_equal(base[key]['image'], other[key]['image']), key


def test_expressions_counts_labels_and_subjects_match_the_config(expressions):
  builder, _ = expressions
  config = builder.builder_config
  records = _records(builder)
  assert builder.info.features['label'].names == list(sf.EXPRESSIONS)
  assert builder.info.features['image'].shape == (32, 32, 3)
  assert list(builder.info.splits) == ['train']
  assert len(records) == config.num_examples == 6 * (2 + 7 * 2)
  expected = sorted(
      [(f'ex{s:04d}', 'neutral', f'ex{s:04d}_neutral', f) for s in range(6) for f in range(2)]
      + [(f'ex{s:04d}', e, f'ex{s:04d}_{e}', f) for s in range(6) for e in sf.EXPRESSIONS[1:] for f in range(2)])
  names = sf.EXPRESSIONS
  assert sorted((r['subject'], names[r['label']], r['sequence'], r['frame']) for r in records) == expected
  for r in records:
    assert r['image'].shape == (32, 32, 3) and r['image'].dtype == np.uint8


def test_every_subject_shows_every_expression(expressions):
  builder, _ = expressions
  labels = collections.defaultdict(set)
  for r in _records(builder):
    labels[r['subject']].add(int(r['label']))
  assert len(labels) == 6
  assert all(seen == set(range(len(sf.EXPRESSIONS))) for seen in labels.values()), labels


def test_identities_counts_labels_and_subjects_match_the_config(identities):
  builder, _ = identities
  records = _records(builder)
  assert builder.info.features['label'].num_classes == 6
  expected = sorted((f'id{s:04d}', s, f'id{s:04d}', i) for s in range(6) for i in range(3))
  assert sorted((r['subject'], int(r['label']), r['sequence'], int(r['frame'])) for r in records) == expected


def test_the_two_configs_share_no_subject(expressions, identities):
  subjects = {kind: {r['subject'] for r in _records(builder)}
              for kind, (builder, _) in (('expressions', expressions), ('identities', identities))}
  assert subjects['expressions'] and subjects['identities']
  assert not subjects['expressions'] & subjects['identities']
  # The same subject index must not be the same person either: the kind is part of the random stream.
  faces = {kind: [sf.subject_identity(sf.make_config(kind), s).vector() for s in range(20)] for kind in TINY}
  for a, b in itertools.product(faces['expressions'], faces['identities']):
    assert not np.allclose(a, b)


def test_identity_and_posing_do_not_depend_on_size_or_subject_count():
  small = sf.make_config('expressions', image_size=32, num_subjects=3)
  large = sf.make_config('expressions', image_size=96, num_subjects=40)
  assert sf.subject_identity(small, 2) == sf.subject_identity(large, 2)
  np.testing.assert_array_equal(sf.subject_posing(small, 2), sf.subject_posing(large, 2))


def test_make_config_names_non_default_values():
  assert sf.make_config('expressions') is sf.SynthFaces.builder_configs['expressions']
  assert sf.make_config('identities', num_subjects=300, seed=0) is sf.SynthFaces.builder_configs['identities']
  config = sf.make_config('expressions', image_size=32, num_subjects=6, seed=1)
  assert config.name == 'expressions_s32_n6_seed1'
  assert (config.image_size, config.num_subjects, config.intensities, config.neutral_per_subject, config.seed) == (
      32, 6, 3, 3, 1)
  assert sf.make_config('identities', images_per_subject=4).name == 'identities_i4'


@pytest.mark.parametrize('size', [16, 37, 64, 96])
def test_render_returns_uint8_rgb_of_the_requested_size(size):
  rng = np.random.default_rng(size)
  identity = render.sample_identity(rng)
  expression = render.sample_expression(render.sample_posing(rng), 5, 1.0, rng)
  image = render.render(identity, expression, render.sample_nuisance(rng), size)
  assert image.shape == (size, size, 3) and image.dtype == np.uint8
  assert image.std() > 10  # a face on a background, not a blank canvas


def test_render_rejects_an_expression_of_the_wrong_length():
  identity = render.sample_identity(np.random.default_rng(0))
  with pytest.raises(ValueError, match='expression'):
    render.render(identity, np.zeros(len(render.EXPRESSION_PARAMS) - 1))


@pytest.mark.parametrize('kind, kwargs, field', [
    ('faces', {}, 'kind'),
    ('expressions', dict(image_size=8), 'image_size'),
    ('identities', dict(num_subjects=0), 'num_subjects'),
    ('identities', dict(images_per_subject=0), 'images_per_subject'),
    ('identities', dict(intensities=3), 'intensities'),
    ('expressions', dict(images_per_subject=4), 'images_per_subject'),
    ('expressions', dict(intensities=0), 'intensities'),
    ('expressions', dict(neutral_per_subject=-1), 'neutral_per_subject'),
    ('expressions', dict(num_subjects=2.5), 'num_subjects'),
    ('expressions', dict(seed=-1), 'seed'),
])
def test_bad_arguments_raise_a_value_error_naming_the_field(kind, kwargs, field):
  with pytest.raises(ValueError, match=field):
    sf.make_config(kind, **kwargs)


def _clean_render(config, subject: int, expression: int, intensity: float = 1.0) -> np.ndarray:
  """The subject's face posing `expression` in a clean studio shot, so only the face differs between images."""
  rng = np.random.default_rng(0)
  pose = render.sample_expression(sf.subject_posing(config, subject), expression, intensity, rng)
  return render.render(sf.subject_identity(config, subject), pose, render.Nuisance(), 48).astype(np.float64)


def test_identity_changes_a_face_more_than_expression():
  config = sf.make_config('expressions')
  faces = {(s, e): _clean_render(config, s, e) for s in range(6) for e in range(len(sf.EXPRESSIONS))}
  distance = lambda a, b: np.abs(faces[a] - faces[b]).mean()
  between_people = np.mean([distance((s, e), (t, e))
                            for e in range(len(sf.EXPRESSIONS)) for s, t in itertools.combinations(range(6), 2)])
  between_expressions = np.mean([distance((s, e), (s, f))
                                 for s in range(6) for e, f in itertools.combinations(range(len(sf.EXPRESSIONS)), 2)])
  assert between_expressions > 0.5  # expressions do change the face
  assert between_people > 5 * between_expressions, (between_people, between_expressions)


def test_intensity_moves_the_face_away_from_the_subjects_neutral():
  config = sf.make_config('expressions')
  levels = (0.0, 0.5, 1.0)
  distances = np.zeros(len(levels))
  for s, e in itertools.product(range(3), range(1, len(sf.EXPRESSIONS))):
    neutral = _clean_render(config, s, e, 0.0)
    distances += [np.abs(_clean_render(config, s, e, level) - neutral).mean() for level in levels]
  assert distances[0] == 0 and distances[0] < distances[1] < distances[2], distances
