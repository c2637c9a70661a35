"""CK+48 (981 48x48 faces of 118 subjects, 7 classes), 10 subject-independent folds, dlib's public-domain ResNet as
the face net: the paper's three rows on real faces, sized for 2 CPU cores. Not a paper row (the paper's teacher is
VGG-Face at 224x224, its CK+ has 8 classes and 4x the faces).

  python -m fn2en_jax.convert dlib_resnet --output=$HOME/face_nets/dlib_resnet
  python -m fn2en_jax.main --config=configs/ck_plus_48_dlib.py --workdir=$HOME/runs/ck48 \
      --config.data.manual_dir=$HOME/data/CK+48 --config.teacher.init=$HOME/face_nets/dlib_resnet \
      --config.data.fold=-1

`data.manual_dir` is the folder with the 7 class folders (anger/ ... surprise/). The first run builds it (or
`python -m fn2en_jax.data.build image_folder --manual_dir=$HOME/data/CK+48 --data_dir=$HOME/tensorflow_datasets
--option=image_size=48` does) with the image_folder builder (subject = `S005` of `S005_001_00000011.png`, the
builder's default regex; stored at its own 48x48, nothing resampled at build time). On GPU/TPU add
`--config.dtype=bfloat16`.

Model selection: every stage is evaluated once an epoch on its fold's validation subjects (`data.validation`: 10%
of the fold's training subjects, ~11 people, ~90 faces), its best checkpoint there is the one passed on and
reported, and the test fold is evaluated once per stage, at the end, on that checkpoint.

How each value was chosen: on fold 0's *training* subjects only, never on a test fold. Those 106 subjects were put
in a tree of their own (the 882 faces of fold 0's training part) and run with this config, so that the runs below
had an inner test part (11 subjects, 93 faces, not used), validation subjects (10, 81 faces) and 708 training faces;
every number below is a validation accuracy (or stage a's validation Lp loss) of those runs, on 2 CPU cores (AMD
EPYC, AVX2), 2026-12-01.

- Input 80x80 for every stage (`data.image_size`): the smallest input for which dlib's net still has all its levels
  (res5 is 1x1 at 80; at 64 it vanishes, so the face stage could not classify). 48x48 sources are upsampled
  (resize to 90, random 80 crop and flip at training, centre crop at test).
- Teacher tap `res4` (2x2x256 at 80): the last spatial level before the embedding, the counterpart of VGG-Face's
  pool5 that the paper regresses; the student's pool5 is also 2x2, so only a 1x1 adapter (128 -> 256 channels) is
  needed. res3 was measured beside it (README "Real faces", "Which layer to transfer").
- Student width 1/2 (32, 64, 128, 256, 256; 1.24M parameters against dlib's 5.6M and the 0.38M of width 1/4), for FN2EN's student and the
  scratch row alike. Chosen on 2026-12-02 (2 CPU cores, AMD EPYC family 25 model 17, AVX-512) with the same
  fold-0 training subjects and everything else as below, against the previous width 1/4 (16 ... 128): stage a's
  validation Lp loss 77.8 against 115.5; stage b's chosen checkpoint 90.1% against 82.7% on the 81 validation faces
  (92.5% against 87.1% on the 93 inner test faces); scratch 92.6% against 87.7% (89.2% against 86.0%). A linear
  probe of the student's pool5 after stage a (benchmarks/linear_probe.py --stage=a): 88.9% against 82.7%, with the
  teacher's res4 at 96.3%: the quarter-width student could not hold what it was asked to imitate. About 2x the
  time of a fold (stages a, b and scratch ~2.2x each).
- `face`: LP-FT, AdamW 1e-4, weight decay 1e-4, 8 epochs (fn2en_jax/recipe.py). Measured over 20 epochs each:
  the classifier fitted first to the frozen embedding by a linear probe (90.1% alone, L2 0.1 chosen among
  1e-3..1), then every layer fine-tuned: 90.1% after 3 epochs, 98.8% at 7, 100% at 8, 95-96% after (stopped at
  11); the same optimizer from a random classifier: 88.9% at epoch 4, 96.3% at 7, flat at 95-96% to 20; a probe
  trained in the graph (the classifier alone at 100x the rate for 4 epochs, then everything): 45.7% after the
  probe, 88.9% at epoch 9 (stopped). The last session's recipe, SGD at 1e-3, was not re-run here; on a test fold it
  got worse the longer it trained (46.5% at 32 steps, 30.3% at 400), which is why the recipe changed. 8 epochs:
  both fine-tuning curves peaked at epochs 7-8 and were flat after, and the face stage is the costliest per step
  (dlib's net at 80x80 is ~5 student steps).
- `a` with the teacher's maps cached (`stage_a.cache_teacher`, 4 fixed views per face): AdamW 1e-3, 20 epochs. Over a
  30-epoch run its validation loss fell fast, then slowly: 704, 201, 133, 104 after epochs 1, 4, 10, 20 (-1% an
  epoch by then: a longer stage a fits the teacher a little closer, at a cost; 20 is where the curve has
  flattened).
- `b`: SGD at 1e-2 (the last session's validation choice: b's fully connected layers are fresh), 20 epochs:
  over 20 epochs after that stage a, its validation accuracy rose to 81.5% at epoch 9, peaked at 88.9% at 13 and
  was flat at 85.2% from 17 to 20.
- `scratch`: SGD at 1e-2, 30 epochs: over a 60-epoch run its validation accuracy rose to 92.6% at epoch 25 and
  stayed there (92.6% at every evaluation from epoch 32 to 60), so 30 epochs of a cosine schedule that ends at 30
  reach the plateau. Each row gets its own budget to convergence, as in the paper, not a shared step count.
- Batch 32, the optimizers and weight decay: fn2en_jax/recipe.py (stage_a.reduction stays the paper's sum: AdamW's
  step does not depend on the loss scale); one epoch of warmup.
"""

import ml_collections

from fn2en_jax import recipe
from fn2en_jax.data.builders import image_folder

EPOCHS = {'face': 8, 'a': 20, 'b': 20, 'scratch': 30}
VIEWS = 4  # fixed augmentation views per face whose teacher maps stage a caches


def get_config():
  config = recipe.get_config(epochs=EPOCHS, name='image_folder', config='', num_folds=10)
  config.data.image_size = 80
  config.data.builder_options = ml_collections.ConfigDict(dict(
      image_size=48, alignment='none', margin=0.2, subject_regex=image_folder.DEFAULT_SUBJECT_REGEX, classes=''))
  config.teacher.update(dict(model='dlib_resnet', tap='res4'))
  config.student.widths = (32, 64, 128, 256, 256)
  config.stage_a.update(dict(cache_teacher=True, views=VIEWS))
  config.paper = {}
  return config
