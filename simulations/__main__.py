"""``python -m simulations run CONFIG.json -o OUT.npz`` (teacher–student) and
``python -m simulations train CONFIG.json -o OUT.npz`` (networks on real data)."""

import sys

USAGE = """usage: python -m simulations {run,train} CONFIG.json -o OUT.npz [--quiet]

  run    online teacher–student simulations (bp, fa, afa, pepita, pepita-forward, ff,
         or a rule from a Python file: "rule": "my_rules.py:NAME")
  train  networks on MNIST / CIFAR-10 (bp, fa, dfa, pepita and variants, ff and its
         variants: ff-unsupervised, ff-recurrent, ff-topdown, local receptive fields)

exit status: 0 ok, 1 stopped early or diverged (output still written), 2 bad
input, 130 interrupted (Ctrl-C; no output written)
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv:  # a usage error, like every other command
        print(USAGE, file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        from .run import main as run_main

        return run_main(rest)
    if cmd == "train":
        if "-h" in rest or "--help" in rest:  # help without importing the training code
            from .train_args import parser

            try:
                parser().parse_args(rest)
            except SystemExit as exc:
                return int(exc.code or 0)
        from .train import main as train_main

        return train_main(rest)
    print(f"unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from theory.runtime.cli import exit as _exit

    _exit(main())
