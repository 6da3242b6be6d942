"""bitsandbytes' log messages that say nothing a user can act on: kept once, or dropped.

Light on purpose (no torch): `lm` installs the filters when it is imported, before
bitsandbytes is, and a test can check them in a fresh process that imports only this
module and bitsandbytes."""
from __future__ import annotations

import logging

# bitsandbytes (0.49+) logs, when it is imported on a CPU with AVX512-BF16, that it could not
# fetch an optional faster 4-bit CPU kernel from the Hub ("pip install kernels"): nothing is
# wrong and nothing is missing, so that one message is dropped where it is logged.
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
KERNELS_LOGGER = "bitsandbytes.backends.cpu.ops"


class _OnceFilter(logging.Filter):
    """Lets a message starting with `prefix` through once per process."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.seen = prefix, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        seen, self.seen = self.seen, True
        return not seen


class _DropFilter(logging.Filter):
    """Drops the messages starting with `prefix`; everything else passes."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def say_int8_cast_once() -> None:
    """bitsandbytes logs its int8 input cast on every matmul of every step: keep the first."""
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _OnceFilter) for f in log.filters):
        log.addFilter(_OnceFilter("MatMul8bitLt: inputs will be cast"))


def drop_kernels_notice() -> None:
    log = logging.getLogger(KERNELS_LOGGER)
    if not any(isinstance(f, _DropFilter) for f in log.filters):
        log.addFilter(_DropFilter(KERNELS_NOTICE))
