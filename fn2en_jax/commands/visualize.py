"""Look inside a trained net: the paper's "top hidden layer neuron visualization", student beside teacher.

  python -m fn2en_jax.visualize --workdir=DIR --layer=pool5 --output=OUT [--teacher_layer=pool5] [--fold=0]

For a layer of the student (stage b's ExpNet: the output of conv block 1..5, `pool1`..`pool5`, pool5 being the
trunk's output that stage a regresses) and a layer of the teacher (the fine-tuned face net of stage `face`, at any
of its taps), it

  (a) ranks the layer's channels ("neurons") over the evaluation faces, by the mean over the faces of each face's
      spatially averaged activation (`--rank_by=mean`), or by its variance over the faces (`--rank_by=variance`:
      the neurons that tell the faces apart most), and shows, for each of the top `--neurons`, the `--top_k`
      evaluation faces with the highest spatially averaged activation of that channel;
  (b) synthesises, for each of those neurons, the input that excites it most by regularised gradient ascent on the
      channel's spatial mean, through the model's pure `apply` with `jax.grad`, the whole ascent one jitted
      `fori_loop`: random jitter (roll) before every step, a Gaussian blur every few steps, an L2 penalty on the
      image, and values kept in the model's input range [-1, 1].

It writes OUT/neurons_<student layer>_<teacher layer>.png (student left, teacher right, as in the paper's figure: a
row per neuron, its synthesised input first, then its top faces) and a .json beside it with the ranked channels, the
faces' eval indices and activations, and each synthesised input's activation before and after the ascent.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax import lax

from fn2en_jax import cli, errors, models, results, stages
from fn2en_jax import workdir as workdir_lib
from fn2en_jax.commands import evaluate
from fn2en_jax.data import pipeline
from fn2en_jax.models import expnet, face_nets, preprocess
from fn2en_jax.train import checkpoint

STUDENT_LAYERS = tuple(f'pool{i}' for i in range(1, 6))


@dataclasses.dataclass(frozen=True)
class Ascent:
  """Regularised gradient ascent on one channel's spatial mean (defaults tuned on the demo's 32..224 px faces)."""
  steps: int = 200
  learning_rate: float = 0.1    # per step, on the gradient scaled to mean |g| = 1
  l2: float = 0.05               # weight of mean(x^2): keeps the image from saturating where the net is indifferent
  jitter: int = 2                # pixels of random shift before each step: no single-pixel checkerboards
  blur_every: int = 4            # a 3x3 Gaussian blur every this many steps: favours low frequencies
  noise: float = 0.1             # standard deviation of the starting image
  seed: int = 0


# --- Feature maps: pure functions of (variables, images) ------------------------------------------------------------

def student_layer_fn(model: expnet.ExpNet, layer: str) -> Callable:
  """`fn(variables, images) -> (N, H, W, C)`: the output of conv block `layer` ('pool1'..'pool5') of the student.
  The first blocks of a trunk are a trunk of fewer blocks with the same parameter names, so that is what runs."""
  if layer not in STUDENT_LAYERS:
    raise ValueError(f'student layer must be one of {STUDENT_LAYERS}, got {layer!r}')
  blocks = int(layer[-1])
  if blocks > len(model.widths):
    raise ValueError(f'the student has {len(model.widths)} conv blocks, so no {layer}')
  trunk = expnet.Trunk(tuple(model.widths[:blocks]), None, model.dtype)

  def fn(variables, images):
    trunk_vars = {c: v['trunk'] for c, v in variables.items() if 'trunk' in v}
    return trunk.apply(trunk_vars, images.astype(model.dtype), train=False).astype(jnp.float32)

  return fn


def teacher_layer_fn(model, layer: str) -> Callable:
  """`fn(variables, images)`: the face net's tap `layer` (vgg_face: pool1..pool5, fc6, fc7), with a vector tap
  seen as a 1x1 map."""
  def fn(variables, images):
    x = model.apply(variables, images, train=False, tap=layer).astype(jnp.float32)
    return x if x.ndim == 4 else x[:, None, None, :]
  return fn


def channel_scores(layer_fn: Callable, variables: dict, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
  """(N, C): every face's spatially averaged activation of every channel."""
  mean_map = jax.jit(lambda v, x: layer_fn(v, x).mean(axis=(1, 2)))
  return np.concatenate([np.asarray(mean_map(variables, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)])


def rank_channels(scores: np.ndarray, rank_by: str) -> np.ndarray:
  """Channels, highest first, by the mean over the faces of their score, or by its variance over the faces."""
  if rank_by == 'mean':
    key = scores.mean(axis=0)
  elif rank_by == 'variance':
    key = scores.var(axis=0)
  else:
    raise ValueError(f"rank_by must be 'mean' or 'variance', got {rank_by!r}")
  return np.argsort(-key, kind='stable')


def top_faces(scores: np.ndarray, channel: int, k: int) -> np.ndarray:
  """The eval indices of the `k` faces with the highest score of `channel`, highest first (ties: lower index)."""
  return np.argsort(-scores[:, channel], kind='stable')[:k]


# --- Synthesis ------------------------------------------------------------------------------------------------------

def _blur(image: jax.Array) -> jax.Array:
  """A 3x3 binomial (Gaussian) blur of an HWC image, edges reflected."""
  kernel = jnp.outer(jnp.array([1., 2., 1.]), jnp.array([1., 2., 1.])) / 16
  padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode='reflect')
  h, w = image.shape[:2]
  return sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))


def activation(layer_fn: Callable, variables: dict, image: jax.Array, channel) -> jax.Array:
  """The objective's signal: channel `channel`'s mean over the map, for one HWC image."""
  return layer_fn(variables, image[None])[0, :, :, channel].mean()


@functools.partial(jax.jit, static_argnames=('layer_fn', 'ascent'))
def synthesize(layer_fn: Callable, variables: dict, start: jax.Array, channel: jax.Array, *,
               ascent: Ascent) -> jax.Array:
  """The HWC input in [-1, 1] that gradient ascent from `start` finds for `channel` (see the module docstring)."""
  def objective(image):
    return activation(layer_fn, variables, image, channel) - ascent.l2 * jnp.mean(image ** 2)

  grad = jax.grad(objective)

  def step(i, carry):
    image, key = carry
    key, sub = jax.random.split(key)
    dy, dx = jax.random.randint(sub, (2,), -ascent.jitter, ascent.jitter + 1)
    g = jnp.roll(grad(jnp.roll(image, (dy, dx), (0, 1))), (-dy, -dx), (0, 1))
    image = image + ascent.learning_rate * g / (jnp.mean(jnp.abs(g)) + 1e-8)
    image = lax.cond(i % ascent.blur_every == ascent.blur_every - 1, _blur, lambda x: x, image)
    return jnp.clip(image, -1.0, 1.0), key

  image, _ = lax.fori_loop(0, ascent.steps, step, (start, jax.random.key(ascent.seed)))
  return image


def starting_noise(image_size: int, ascent: Ascent) -> np.ndarray:
  rng = np.random.default_rng(ascent.seed)
  return np.clip(rng.normal(0.0, ascent.noise, (image_size, image_size, 3)), -1, 1).astype(np.float32)


def neurons(layer_fn: Callable, variables: dict, images: np.ndarray, *, num_neurons: int, top_k: int, rank_by: str,
            ascent: Ascent) -> dict:
  """(a) and (b) for the top `num_neurons` channels of one net's layer: a JSON-able dict, and the synthesised
  inputs under 'synthesised' (an array, (num_neurons, H, W, 3))."""
  scores = channel_scores(layer_fn, variables, images)
  channels = rank_channels(scores, rank_by)[:num_neurons]
  start = jnp.asarray(starting_noise(images.shape[1], ascent))
  measure = jax.jit(functools.partial(activation, layer_fn))
  entries, synthesised = [], []
  for channel in channels:
    image = synthesize(layer_fn, variables, start, jnp.int32(channel), ascent=ascent)
    faces = top_faces(scores, channel, top_k)
    entries.append({'channel': int(channel), 'mean_over_faces': float(scores[:, channel].mean()),
                    'variance_over_faces': float(scores[:, channel].var()),
                    'top_faces': faces.tolist(), 'top_face_activations': scores[faces, channel].tolist(),
                    'activation_of_start': float(measure(variables, start, channel)),
                    'activation_of_synthesised': float(measure(variables, image, channel))})
    synthesised.append(np.asarray(image))
  return {'rank_by': rank_by, 'num_channels': int(scores.shape[1]), 'neurons': entries,
          'synthesised': np.stack(synthesised)}


# --- The figure -----------------------------------------------------------------------------------------------------

def plot(nets: dict[str, dict], images: np.ndarray, path: str) -> None:
  """One panel per net (student, teacher), side by side: a row per neuron, its synthesised input, then its faces."""
  plt = results.pyplot()  # pylint: disable=protected-access
  rows = max(len(n['neurons']) for n in nets.values())
  columns = 1 + max(len(e['top_faces']) for n in nets.values() for e in n['neurons'])
  fig = plt.figure(figsize=(0.9 * columns * len(nets) + 0.3, 1.0 * rows + 0.4))
  for panel, (title, net) in zip(fig.subfigures(1, len(nets), wspace=0.03), nets.items()):
    axes = panel.subplots(rows, columns, squeeze=False, gridspec_kw=dict(left=0.02, right=0.98, bottom=0.02,
                                                                         top=0.88, wspace=0.06, hspace=0.3))
    for ax in axes.flat:
      ax.axis('off')
    for r, entry in enumerate(net['neurons']):
      axes[r, 0].imshow(preprocess.to_uint8(net['synthesised'][r]))
      axes[r, 0].set_title(f"ch {entry['channel']}", fontsize=6, pad=2)
      for c, (face, value) in enumerate(zip(entry['top_faces'], entry['top_face_activations']), start=1):
        axes[r, c].imshow(preprocess.to_uint8(images[face]))
        axes[r, c].set_title(f'{value:.2f}', fontsize=6, pad=2)
    panel.suptitle(title, fontsize=8)
  fig.savefig(path, dpi=80)
  plt.close(fig)


# --- A workdir's nets -----------------------------------------------------------------------------------------------

def run_dir(workdir: str, fold: int) -> str:
  """The directory holding the stages: the workdir, or its fold_<fold>/ when it is a k-fold workdir."""
  return workdir_lib.fold_dir(workdir, fold) if workdir_lib.is_kfold(workdir) else workdir


def visualize(workdir: str, output: str, *, layer: str = 'pool5', teacher_layer: str | None = None,
              student_stage: str = 'b', teacher_stage: str = 'face', fold: int = 0, num_neurons: int = 4,
              top_k: int = 6, rank_by: str = 'mean', ascent: Ascent = Ascent(), data_dir: str | None = None) -> dict:
  """Both nets' neurons of a finished workdir; writes the figure and its JSON into `output`; returns the JSON."""
  if student_stage not in stages.students():
    raise errors.ConfigError(f'--stage={student_stage!r} is not a stage that trains the student',
                             f'pass --stage= one of {", ".join(stages.students())}')
  directory = run_dir(os.path.abspath(os.path.expanduser(workdir)), fold)
  saved = workdir_lib.load_config(directory)
  data_dir = os.path.abspath(os.path.expanduser(data_dir or saved.data_dir))
  config = stages.budgeted(saved, data_dir)
  teacher_layer = teacher_layer or config.teacher.tap
  for stage in (student_stage, teacher_stage):
    if stage not in evaluate.finished_stages(config, directory):
      raise errors.WorkdirError(f'{directory}: stage {stage!r} has no final checkpoint',
                                'finish the run first (run the same fn2en_jax.main command again)')
  test = pipeline.splits(config.data, data_dir).test
  images = pipeline.eval_arrays(test, config.data)['image']
  size, num_classes = config.data.image_size, len(test.class_names)
  student = expnet.from_config(config, num_classes)
  teacher = face_nets.build(config.teacher, num_classes, models.dtype(config))
  teacher_vars = checkpoint.trained_variables(teacher, size, os.path.join(directory, teacher_stage))
  try:  # a wrong tap is the user's to fix: named before anything is computed
    jax.eval_shape(teacher_layer_fn(teacher, teacher_layer), teacher_vars, images[:1])
  except ValueError as e:
    raise errors.ConfigError(f'--teacher_layer={teacher_layer!r}: {e}',
                             'pass a tap of the face net (vgg_face: pool1..pool5, fc6, fc7)') from None
  student_vars = checkpoint.trained_variables(student, size, os.path.join(directory, student_stage))
  nets = {f'student ({student_stage}), {layer}': (student_layer_fn(student, layer), student_vars),
          f'teacher ({teacher_stage}), {teacher_layer}': (teacher_layer_fn(teacher, teacher_layer), teacher_vars)}
  found = {title: neurons(fn, variables, images, num_neurons=num_neurons, top_k=top_k, rank_by=rank_by,
                          ascent=ascent) for title, (fn, variables) in nets.items()}
  os.makedirs(output, exist_ok=True)
  name = f'neurons_{layer}_{teacher_layer}'
  plot(found, images, os.path.join(output, f'{name}.png'))
  result = {'run_dir': directory, 'figure': f'{name}.png', 'ascent': dataclasses.asdict(ascent),
            'nets': {title: {k: v for k, v in net.items() if k != 'synthesised'} for title, net in found.items()}}
  with open(os.path.join(output, f'{name}.json'), 'w') as f:
    json.dump(result, f, indent=2)
  np.savez(os.path.join(output, f'{name}_synthesised.npz'),
           **{f'net{i}': net['synthesised'] for i, net in enumerate(found.values())})
  return result


def define_flags() -> None:
  """The command's flags; defined when it runs, not on import, so that other code can import this module."""
  flags.DEFINE_string('workdir', None, 'A finished workdir of fn2en_jax.main (single-fold or k-fold).', required=True)
  flags.DEFINE_string('output', None, 'Folder for the figure and its JSON.', required=True)
  flags.DEFINE_string('layer', 'pool5', f'Student layer: one of {STUDENT_LAYERS}.')
  flags.DEFINE_string('teacher_layer', '', "Teacher tap (vgg_face: pool1..pool5, fc6, fc7); '' = config.teacher.tap.")
  flags.DEFINE_string('stage', 'b', f'The student stage to look inside: one of {stages.students()} (b is FN2EN).')
  flags.DEFINE_integer('fold', 0, 'For a k-fold workdir: the fold whose nets to show.')
  flags.DEFINE_integer('neurons', 4, 'How many of the top neurons to show per net.')
  flags.DEFINE_integer('top_k', 6, 'How many evaluation faces per neuron.')
  flags.DEFINE_string('rank_by', 'mean', "Rank neurons by the 'mean' or the 'variance' of their activation over "
                      'the evaluation faces.')
  flags.DEFINE_integer('steps', Ascent.steps, 'Gradient-ascent steps per synthesised input.')
  flags.DEFINE_string('data_dir', '', "Where the dataset is, if not the run's config.data_dir.")


def main(argv) -> None:
  if len(argv) > 1:
    raise errors.ConfigError(f'unexpected arguments: {argv[1:]}', 'pass everything as --flag=value')
  f = flags.FLAGS
  if f.layer not in STUDENT_LAYERS:
    raise errors.ConfigError(f'--layer={f.layer!r} is not a layer of the student',
                             f'pass one of {", ".join(STUDENT_LAYERS)} (pool5: the trunk stage a trains)')
  if f.rank_by not in ('mean', 'variance'):
    raise errors.ConfigError(f'--rank_by={f.rank_by!r}', 'pass --rank_by=mean or --rank_by=variance')
  result = visualize(f.workdir, f.output, layer=f.layer, teacher_layer=f.teacher_layer or None,
                     student_stage=f.stage, fold=f.fold, num_neurons=f.neurons, top_k=f.top_k,
                     rank_by=f.rank_by, ascent=Ascent(steps=f.steps), data_dir=f.data_dir or None)
  print(f"Written to {os.path.join(f.output, result['figure'])}", flush=True)


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
