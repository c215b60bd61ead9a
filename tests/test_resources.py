"""Device fallback and the up-front memory check."""

import pytest
import torch

from dsg_core.errors import ConfigError
from dsg_core.generation import GenerationConfig, generate
from dsg_core.models import get_spec, load_model
from dsg_core.resources import estimate_generation_bytes, resolve_device


def test_cuda_falls_back_to_cpu_with_a_warning():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: nothing to fall back from")
    with pytest.warns(RuntimeWarning, match="no CUDA device"):
        assert resolve_device("cuda") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu9")


def test_estimate_grows_linearly_with_batch():
    spec = get_spec("resnet20_mnist")
    model = load_model(spec.name)
    a = estimate_generation_bytes(model, spec.input_shape, 10)
    b = estimate_generation_bytes(model, spec.input_shape, 20)
    assert b == 2 * a and a > 0


def test_impossible_batch_is_refused_up_front_with_an_estimate():
    spec = get_spec("resnet18")
    model = load_model("resnet18", weights="random")
    cfg = GenerationConfig(samples=100_000, batch_size=100_000, iterations=1)
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB"):
        generate(model, spec.input_shape, cfg)
