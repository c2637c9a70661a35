"""An independent PyTorch reference of the FaceNet2ExpNet train steps, to time beside the JAX ones.

  python benchmarks/pytorch_stage_a.py --stage=a --image_size=224 --batch_size=16

Stage a: a frozen VGG-16 (conv1_1 .. pool5, random weights: the time does not depend on them) gives the target map,
the ExpNet trunk (conv3x3 -> BatchNorm -> ReLU -> maxpool 2x2/2, five blocks) regresses it with the summed squared
error averaged over the batch, SGD with momentum. Stage b: the same trunk with its head (flatten -> FC -> ReLU ->
dropout -> FC) trained with cross-entropy. Prints one JSON line: the median step time of `--steps` steps after
`--warmup` ones. Written from the paper, not from the JAX code; nothing is shared with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def vgg16_features(width: float, blocks: int = 5) -> nn.Sequential:
  """conv1_1 .. pool<blocks> of VGG-16."""
  layers, cin = [], 3
  for convs, channels in VGG16[:blocks]:
    cout = max(1, round(channels * width))
    for _ in range(convs):
      layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
      cin = cout
    layers.append(nn.MaxPool2d(2, 2))
  return nn.Sequential(*layers)


def expnet_trunk(widths) -> nn.Sequential:
  layers, cin = [], 3
  for cout in widths:
    layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.1),
               nn.ReLU(inplace=True), nn.MaxPool2d(2, 2)]
    cin = cout
  return nn.Sequential(*layers)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--stage', choices=('a', 'b'), default='a')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--widths', default='64,128,256,512,512')
  parser.add_argument('--teacher_width', type=float, default=1.0)
  parser.add_argument('--teacher_tap', default='pool5', choices=[f'pool{i}' for i in range(1, 6)])
  parser.add_argument('--fc_dim', type=int, default=256)
  parser.add_argument('--num_classes', type=int, default=7)
  parser.add_argument('--lr', type=float, default=0.01)
  parser.add_argument('--warmup', type=int, default=1)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--threads', type=int, default=0, help='torch.set_num_threads; 0 = the default')
  parser.add_argument('--channels_last', action='store_true', help='NHWC memory format (oneDNN often prefers it)')
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  widths = [int(w) for w in args.widths.split(',')]
  trunk = expnet_trunk(widths)
  images = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1
  fmt = torch.channels_last if args.channels_last else torch.contiguous_format
  images = images.contiguous(memory_format=fmt)

  if args.stage == 'a':
    blocks = int(args.teacher_tap[-1])
    teacher = vgg16_features(args.teacher_width, blocks).eval().to(memory_format=fmt)
    for p in teacher.parameters():
      p.requires_grad_(False)
    teacher_channels = max(1, round(VGG16[blocks - 1][1] * args.teacher_width))
    adapter = nn.Conv2d(widths[-1], teacher_channels, 1) if teacher_channels != widths[-1] else nn.Identity()
    student = nn.Sequential(trunk, adapter).train().to(memory_format=fmt)

    def loss_fn():
      with torch.no_grad():
        target = teacher(images)
      out = student(images)
      if out.shape != target.shape:
        raise SystemExit(f'student map {tuple(out.shape)} != teacher map {tuple(target.shape)}: '
                         'pass --widths and --teacher_tap that end at the same size')
      return (out - target).pow(2).flatten(1).sum(1).mean()
  else:
    side = args.image_size // 2 ** len(widths)
    student = nn.Sequential(trunk, nn.Flatten(), nn.Linear(widths[-1] * side * side, args.fc_dim), nn.ReLU(),
                            nn.Dropout(0.5), nn.Linear(args.fc_dim, args.num_classes)).train().to(memory_format=fmt)
    labels = torch.arange(args.batch_size) % args.num_classes

    def loss_fn():
      return nn.functional.cross_entropy(student(images), labels)

  optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    return float(loss.detach())  # waits for the step, like block_until_ready

  for _ in range(args.warmup):
    step()
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  print(json.dumps(dict(stage=args.stage, step_s=step_s, times_s=times, images_per_call=args.batch_size,
                        images_per_s=args.batch_size / step_s, loss=loss, torch=torch.__version__,
                        threads=torch.get_num_threads(), channels_last=args.channels_last)))


if __name__ == '__main__':
  main()
