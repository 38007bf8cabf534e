"""A benchmark that pins torch's thread count does not change the next benchmark's."""

from __future__ import annotations

import torch

from benchmarks.conftest import keep_threads


def test_keep_threads_restores_the_count_a_block_changed():
    before = torch.get_num_threads()
    try:
        with keep_threads(2):
            assert torch.get_num_threads() == 2
            torch.set_num_threads(1)  # what the Fourier compressor benchmark does
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
