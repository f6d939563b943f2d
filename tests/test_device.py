"""Tests for r1mini.device: the device a run picks when told, full precision off CUDA, and the throughput row
(TFLOP/s, MFU against a known peak, peak memory) worked out by hand."""

import contextlib

import pytest
import torch

import r1mini.device as device_module
from r1mini.config import ConfigError, command_line_message
from r1mini.device import autocast, cache_dtype, peak_flops, peak_memory_mb, pick_device, throughput, uses_bf16

CPU = torch.device("cpu")


def test_pick_device_when_told():
    assert pick_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError) as e:
            pick_device("cuda")
        assert command_line_message(e.value) == "--device cuda requested but CUDA is not available; use cpu"
    assert pick_device(None).type in ("cpu", "cuda", "mps")


@pytest.mark.parametrize("requested, local_rank, world, expected", [
    ("cuda", 1, 2, torch.device("cuda", 1)),  # used to be torch.device("cuda"): no index for DDP's device_ids
    (None, 1, 2, torch.device("cuda", 1)),
    ("cuda", 0, 1, torch.device("cuda", 0)),
    ("cuda:1", 1, 2, torch.device("cuda", 1)),  # the rank's own GPU, spelled out
    ("cuda:3", 0, 1, torch.device("cuda", 3)),  # one process may use any GPU
])
def test_each_torchrun_rank_takes_its_own_gpu(monkeypatch, requested, local_rank, world, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    assert pick_device(requested) == expected


def test_a_fixed_gpu_under_torchrun_is_refused(monkeypatch):
    """--device cuda:0 on rank 1 would put both ranks on GPU 0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as e:
        pick_device("cuda:0")
    assert command_line_message(e.value) == ("--device cuda:0 under torchrun would put all 2 ranks on one GPU; ask "
                                             "for cuda and each rank takes the GPU of its LOCAL_RANK")


def test_no_autocast_and_no_peak_off_cuda(monkeypatch):
    monkeypatch.delenv("R1MINI_EMULATE_CUDA", raising=False)
    assert isinstance(autocast(CPU), contextlib.nullcontext)
    assert peak_flops(CPU) is None
    assert peak_memory_mb(CPU) > 10  # this process holds at least torch: tens of MB, in MB not KiB or bytes
    assert peak_memory_mb(CPU) < 1e6


def test_throughput_by_hand(monkeypatch):
    # 1,000 tokens/s at 6e9 FLOPs per token = 6e12 FLOP/s = 6 TFLOP/s; no known peak on cpu: no MFU
    row = throughput(1000.0, 6e9, CPU)
    assert row["tflops"] == 6.0 and "mfu" not in row and row["peak_mem_mb"] > 0
    # with a known peak, MFU is the achieved FLOP/s over the peak of all ranks: 6e12 / (2 * 1e15)
    monkeypatch.setattr(device_module, "peak_flops", lambda device: 1e15)
    row = throughput(1000.0, 6e9, CPU, world=2)
    assert row["tflops"] == 6.0 and row["mfu"] == 0.003


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA H100 NVL", 835e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                        ("Tesla T4", None)])
def test_peak_flops_tells_the_h100s_apart(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops(torch.device("cuda", 0)) == peak


@pytest.mark.parametrize("capability, bf16", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_gpus_before_ampere_run_in_float32(monkeypatch, capability, bf16):
    """No bf16 tensor cores before compute capability 8.0 (a T4, a V100): no bf16 autocast, a float32 cache."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    device_module._gpu_has_bf16.cache_clear()  # asked once per GPU: forget the last test's answer
    gpu = torch.device("cuda", 0)
    try:
        assert uses_bf16(gpu) == bf16
        assert cache_dtype(gpu) == (torch.bfloat16 if bf16 else torch.float32)
    finally:
        device_module._gpu_has_bf16.cache_clear()


@pytest.mark.parametrize("capability, device, preset", [((7, 5), None, "cpu"), ((7, 0), "cuda", "cpu"),
                                                        ((8, 0), None, "gpu"), ((9, 0), "cuda:0", "gpu"),
                                                        ((9, 0), "cpu", "cpu")])
def test_the_default_preset_needs_a_gpu_with_bf16(monkeypatch, capability, device, preset):
    """A T4 (7.5) or a V100 (7.0) has no bf16 and runs in float32: the gpu preset's speedrun would take most of a
    day there. Without --preset, scripts take the gpu preset on an Ampere or newer GPU only."""
    import dataclasses
    from r1mini.config import parse_config
    from r1mini.device import default_preset
    empty = dataclasses.make_dataclass("Empty", [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "a GPU")
    device_module._gpu_has_bf16.cache_clear()
    try:
        assert default_preset(device) == preset
        argv = [] if device is None else ["--device", device]
        assert parse_config(empty, {"cpu": {}, "gpu": {}}, "doc", argv)[1].preset == preset
    finally:
        device_module._gpu_has_bf16.cache_clear()
