"""``python -m simulations run CONFIG.json -o OUT.npz`` (teacher–student) and
``python -m simulations train CONFIG.json -o OUT.npz`` (networks on real data)."""
import sys

USAGE = """usage: python -m simulations {run,train} CONFIG.json -o OUT.npz [--quiet]

  run    online teacher–student simulations (bp, fa, afa, pepita, pepita-forward)
  train  networks on MNIST / CIFAR-10 (bp, fa, dfa, pepita and variants, ff)
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        from .run import main as run_main
        return run_main(rest)
    if cmd == "train":
        from .train import main as train_main
        return train_main(rest)
    print(f"unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
