"""`python -m fn2en_jax.kfold --workdirs=DIR_SEED0,DIR_SEED1,DIR_SEED2 --output=DIR/seeds`: the k-fold runs of one
config with other seeds, pooled (fn2en_jax/kfold.py's `pool`): each method's mean and standard deviation over every
fold of every run, the spread of the runs' means, and FN2EN's paired difference from each baseline."""

from __future__ import annotations

import os
import sys

from absl import app, flags

from fn2en_jax import cli, kfold
from fn2en_jax import workdir as workdir_lib


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  pooled = kfold.pool([kfold.load_report(w) for w in flags.FLAGS.workdirs])
  markdown = kfold.pooled_markdown(pooled)
  print(markdown, flush=True)
  if flags.FLAGS.output:
    output = os.path.expanduser(flags.FLAGS.output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    workdir_lib.write_json(f'{output}.json', pooled)
    workdir_lib.write_text(f'{output}.md', markdown)
    print(f'Written to {output}.md and {output}.json', file=sys.stderr)


if __name__ == '__main__':
  flags.DEFINE_list('workdirs', None, 'Finished k-fold workdirs (--config.data.fold=-1) of one config, other seeds.',
                    required=True)
  flags.DEFINE_string('output', '', 'Also write the pooled report to OUTPUT.md and OUTPUT.json.')
  cli.run_app(main)
