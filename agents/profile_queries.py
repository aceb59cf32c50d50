"""What an operator reads off a profile before deploying, as the planners ask it (Dynamo's
pre-deployment profiling, SkyServe's target rate): figures of one instance, computed from the
performance model the simulator runs."""

from __future__ import annotations

from chiron_gym.sim import BatchComposition, InstanceSpec


def prefill_alone_s(inst: InstanceSpec, prompt_tokens: float) -> float:
    """Seconds to prefill one prompt of ``prompt_tokens`` alone on ``inst``, chunk by chunk
    (``max_num_batched_tokens`` per iteration)."""
    p, done, t = max(1, round(prompt_tokens)), 0, 0.0
    while done < p:
        chunk = min(p - done, inst.max_num_batched_tokens)
        t += inst.perf_model.iteration_time_s(BatchComposition.with_decodes([chunk], [done], []))
        done += chunk
    return t


__all__ = ["prefill_alone_s"]
