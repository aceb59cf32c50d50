"""The ``chiron`` command: the composition root, and the only package that prints.

It parses and dispatches; what a command computes lives in its layer (agents, backends,
scenario, profiles). One module per group of commands, each command's parser (``<command>_parser``)
beside its handler (``_cmd_<command>``):

- ``parser``: ``build_parser`` (every command, in order) and ``main``, the entry point and the
  one place errors are reported (``InputError`` and file errors: ``chiron: ...``, exit 2);
- ``args``: what the command modules share (argparse types for numbers and seeds, the
  ``--executor`` flags, name lists);
- ``simulate``: ``simulate``, ``scenarios``;
- ``evaluate``: ``evaluate``, ``benchmark``, ``dataset``;
- ``train``: ``train ppo``, ``tune ppo``, ``ensemble``, ``support``;
- ``bench``: ``bench``, ``sweep``, ``fidelity``;
- ``calibration``: ``trace stats|tables``, ``profile fit|build|list|measure|compare``.

Only this package may print (ruff's T20) and import ``agents`` (inside handlers:
tests/test_layering.py); heavy modules (torch, SB3, Ray, pandas) are imported inside the
handler that needs them.
"""

from chiron_gym.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
