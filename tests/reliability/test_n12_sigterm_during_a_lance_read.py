"""Issue 21, N12: SIGTERM while Lance is reading stops the command like any SIGTERM (exit 143),
not with Lance's wrapped error (``ArrowInvalid: External error: Stopped``, exit 1)."""
import os
import signal
import threading
import time

import lance
import numpy as np
import pyarrow as pa
import pytest

from featurekit.errors import RunError
from featurekit.lifetime import Stopped, stop_on_signals


def test_n12_a_sigterm_inside_a_lance_read_comes_out_as_stopped(tmp_path):
    uri = str(tmp_path / "big.lance")
    n = 400_000
    lance.write_dataset(pa.table({"x": np.random.default_rng(0).random(n), "s": pa.array([str(i) for i in range(n)])}),
                        uri)
    ds = lance.dataset(uri)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    deadline = time.monotonic() + 30
    with pytest.raises(Stopped) as info:
        with stop_on_signals():
            try:
                while time.monotonic() < deadline:
                    ds.count_rows(filter="s LIKE '%99%'")
                    ds.to_table(filter="x > 0.5")
            except (OSError, ValueError) as exc:  # what featurekit's own code does with a Lance error
                raise RunError(f"cannot read: {exc}") from exc
    timer.cancel()
    assert info.value.signum == signal.SIGTERM
    assert 128 + info.value.signum == 143
