"""``ProfilePerfModel`` evaluates the forms' arithmetic itself (``profiles/perf.py``): for every
shipped profile and random batches, each term equals the form's own ``__call__`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from chiron_gym import profiles
from chiron_gym.profiles.perf import ProfilePerfModel


def reference_token_terms(model: ProfilePerfModel, num_tokens: int, num_seqs: int) -> float:
    """The former ``_token_terms``: each form called."""
    c = model.profile.iteration
    layer = c.elementwise(num_tokens)
    for g in c.gemm.values():
        layer += g(num_tokens)
    if c.allreduce is not None:
        layer += 2.0 * c.allreduce(num_tokens * 2 * model.profile.model.hidden)
    lm = c.lm_head(num_seqs)
    return c.cpu(num_seqs) + c.embedding(num_tokens) + lm + model.profile.model.layers * layer


@pytest.mark.parametrize("name", profiles.names())
def test_the_inlined_terms_equal_the_forms_bit_for_bit(name: str) -> None:
    model = ProfilePerfModel(profiles.load(name))
    c = model.profile.iteration
    rng = np.random.default_rng(0)
    cases = [(1, 1), (8192, 1), (4096, 256), (2**23, 3)]  # the last: NCCL's side of all-reduce
    cases += [(int(rng.integers(1, 20_000)), int(rng.integers(1, 512))) for _ in range(300)]
    for n, s in cases:
        assert model._token_terms(n, s) == reference_token_terms(model, n, s), (n, s)
        assert model._tokens(n, s) == reference_token_terms(model, n, s), (n, s)
    for _ in range(300):
        k = int(rng.integers(1, 9))
        chunks = [int(x) for x in rng.integers(1, 9000, k)]
        contexts = [int(x) for x in rng.integers(0, 30_000, k)]
        assert model._prefill(chunks, contexts) == c.prefill_attention(chunks, contexts)
    for _ in range(300):
        n, x = int(rng.integers(1, 1025)), float(rng.integers(0, 4_000_000))
        assert model._decode_piece(n, x) == c.decode_attention.piece(n, x), (n, x)
