"""``privtrain keys``: make a key file, rotate a run's key, open a sealed file.

- ``privtrain keys new PATH [--id ID] [--add]``: a fresh random 256-bit key in a 0600 JSON key file
  (``--add``: a new current key in an existing keyring, which keeps the old ids to open older files);
- ``privtrain keys rotate RUN_DIR --new-key-file NEW [--old-key-file OLD]``: :mod:`privtrain.artifacts.rotation`;
- ``privtrain keys open FILE [--output OUT] [--key-file PATH]``: the plaintext of a sealed file (synthetic rows,
  predictions), written 0600, or to standard output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from privtrain.errors import UserError


def _new(args: argparse.Namespace) -> int:
    from privtrain.crypto import keys

    ring = keys.new_file(args.path, args.id, add=args.add)
    print(
        f"{'added' if args.add else 'wrote'} key id {ring.current} to {args.path} (mode 0600); use it with "
        f"artifacts.key_file={args.path} or {keys.ENV_KEY_FILE}={args.path}. Keep a copy: without it the files it "
        "encrypts cannot be read."
    )
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from privtrain.artifacts.rotation import rotate
    from privtrain.crypto import keys

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass the output directory of a run.")
    new = keys.from_file(args.new_key_file)
    old = keys.from_file(args.old_key_file) if args.old_key_file else keys.resolve(None)
    done = rotate(run_dir, new, old, args.ledger)
    print(
        f"run {done['run_id']}: re-encrypted {', '.join(done['files'])} from key id(s) "
        f"{', '.join(done['old_key_ids'])} to {done['new_key_id']}; recorded in the ledger (entry {done['entry']})"
    )
    return 0


def _open(args: argparse.Namespace) -> int:
    from privtrain.crypto import files, keys

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no file {str(path)!r}; pass a file privtrain wrote encrypted.")
    plain, context = files.open_sealed(
        path.read_bytes(), str(path), expect=files.expected_context(path), keyring=keys.resolve(args.key_file)
    )
    if context is None:
        raise UserError(f"{path} is not encrypted; read it as it is.")
    if args.output:
        files.write_private(Path(args.output), plain, exclusive=True)
        print(f"opened {path} ({context}) to {args.output} (mode 0600)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(plain)
        sys.stdout.flush()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "keys",
        help="artifact encryption keys: new, rotate, open",
        description="Keys that encrypt a run's checkpoints, synthetic rows and predictions "
        "(docs/governance/encryption.md).",
    )
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="write a fresh random key to a 0600 JSON key file")
    new.add_argument("path", help="the key file to create (never overwritten)")
    new.add_argument("--id", default=None, help="the key id (default: today's date and 6 random hex digits)")
    new.add_argument("--add", action="store_true", help="add a new current key to an existing keyring")
    new.set_defaults(func=_new)
    rot = sub.add_parser("rotate", help="re-encrypt a run's files under a new key, recorded in the ledger")
    rot.add_argument("run_dir", help="output directory of a finished run with encrypted files")
    rot.add_argument("--new-key-file", required=True, metavar="NEW", help="key file whose current key encrypts")
    rot.add_argument(
        "--old-key-file",
        default=None,
        metavar="OLD",
        help="key file that opens the files now (default: the environment's key, or NEW's keyring)",
    )
    rot.add_argument("--ledger", default=None, metavar="PATH", help="the run's ledger (default: the one it used)")
    rot.set_defaults(func=_rotate)
    opn = sub.add_parser("open", help="decrypt a sealed file (synthetic rows, predictions)")
    opn.add_argument("file", help="a file privtrain wrote encrypted")
    opn.add_argument("--output", default=None, help="where to write the plaintext (0600; default: standard output)")
    opn.add_argument("--key-file", default=None, metavar="PATH", help="the key file (default: the environment's)")
    opn.set_defaults(func=_open)
