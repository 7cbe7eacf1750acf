"""The bench's decode timing (tools/bench.decode_ms): the difference of a short and a long run,
each the best of several, alternated; nan where no long run was slower than a short one."""

import asyncio
import time

from webgpt.tools.bench import decode_ms


class Timed:
    """A model whose generate_ids takes `first` s once (a slow start), then ms_token ms a token
    (and `extra` s on every short run, if given: a drift that hides the difference)."""

    def __init__(self, ms_token, first=0.0, extra=0.0):
        self.n_ctx, self.ms_token, self.first, self.extra = 4096, ms_token, first, extra
        self.calls = []

    async def generate_ids(self, ids, max_new_tokens, stop_at_eot, **sampling):
        self.calls.append(max_new_tokens)
        delay = max_new_tokens * self.ms_token / 1e3
        if self.first:
            delay, self.first = delay + self.first, 0.0
        if self.extra and max_new_tokens == min(self.calls):
            delay += self.extra
        time.sleep(delay)
        return ids


def test_steady_state_difference():
    m = Timed(ms_token=2.0, first=0.2)
    ms = asyncio.run(decode_ms(m, [1, 2, 3], 20))
    assert 1.5 < ms < 3.0, ms
    # warm-up, then short and long runs alternate (at least two of each)
    short, long = m.calls[0], m.calls[0] + 20
    assert m.calls[1:5] == [short, long, short, long]


def test_no_difference_is_nan_not_negative():
    # every short run slower than the long ones: no measurement, in at most six rounds
    m = Timed(ms_token=1.0, extra=0.1)
    ms = asyncio.run(decode_ms(m, [1], 8))
    assert ms != ms and len(m.calls) == 1 + 2 * 6
