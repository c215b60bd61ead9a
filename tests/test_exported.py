"""torch.export programs, modularized: the same generation losses, gradients and quantized model as eager."""

import pytest
import torch

from dsg_core.errors import ModelError
from dsg_core.generation import preset
from dsg_core.generation.generator import Objective, generate
from dsg_core.generation.stats import BNStats
from dsg_core.models import bn_layer_names, load_model
from dsg_core.models.exported import input_shape_of, modularize
from dsg_core.quant import QuantConfig, quantize_model

SHAPE = (1, 28, 28)


def export(model, dynamic=True):
    dyn = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic else {}
    return torch.export.export(model.eval(), (torch.zeros(2, *SHAPE),), **dyn)


@pytest.fixture(scope="module")
def pair():
    eager = load_model("resnet20_mnist")
    return eager, modularize(export(eager).module())


def test_graph_nodes_become_the_eager_modules(pair):
    eager, gm = pair
    assert bn_layer_names(gm) == bn_layer_names(eager)  # same names, same order: BN targets line up
    kinds = {type(m).__name__ for m in gm.modules()}
    assert {"Conv2d", "BatchNorm2d", "Linear", "ReLU"} <= kinds
    assert not [n for n in gm.graph.nodes if n.op == "call_function" and "batch_norm" in str(n.target)]
    x = torch.randn(5, *SHAPE)
    assert torch.allclose(gm(x), eager(x), atol=1e-5)


def test_decomposed_program_is_modularized_too(pair):
    eager, _ = pair
    gm = modularize(export(eager).run_decompositions().module())
    assert bn_layer_names(gm) == bn_layer_names(eager)
    assert type(gm.fc).__name__ == "Linear"  # from addmm(bias, x, permute(weight))
    x = torch.randn(3, *SHAPE)
    assert torch.allclose(gm(x), eager(x), atol=1e-5)


def _loss_and_grad(model, cfg, x):
    objective = Objective.build(model, SHAPE, cfg, "cpu", 10)
    x = x.clone().requires_grad_(True)
    with BNStats(model, objective.targets.names) as st:
        logits = model(x)
        mean, std = st.collect()
    loss = objective(x, logits, mean, std, None)[0]
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("method", ["zeroq", "dsg"])
def test_same_losses_and_gradients_as_eager(pair, method):
    eager, gm = pair
    cfg = preset("paper", image_size=28, method=method, samples=8, batch_size=8, iterations=3).validate()
    x = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(1))
    (l1, g1), (l2, g2) = _loss_and_grad(eager, cfg, x), _loss_and_grad(gm, cfg, x)
    assert torch.allclose(l1, l2, rtol=1e-5) and torch.allclose(g1, g2, rtol=1e-4, atol=1e-7)
    a = generate(eager, SHAPE, cfg)
    b = generate(gm, SHAPE, cfg)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-4)


@pytest.mark.parametrize("quantizer", ["minmax", "dsg-avg"])
def test_same_quantized_model_as_eager(pair, quantizer):
    eager, gm = pair
    calib = torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(2))
    cfg = QuantConfig(wbits=4, abits=4, quantizer=quantizer)
    qe, qg = quantize_model(eager, calib, cfg), quantize_model(gm, calib, cfg)
    assert qg.quant_report.weight_layers == qe.quant_report.weight_layers
    assert (qg.quant_report.first_layer, qg.quant_report.last_layer) == ("conv1", "fc")
    assert len(qg.quant_report.act_quantizers) == len(qe.quant_report.act_quantizers)
    x = torch.randn(16, *SHAPE)
    assert torch.allclose(qg(x), qe(x), atol=1e-4)


def test_fixed_batch_is_refused_with_the_recipe(pair):
    with pytest.raises(ModelError, match="fixed batch size of 2.*dynamic_shapes"):
        input_shape_of(export(pair[0], dynamic=False))
    assert input_shape_of(export(pair[0])) == SHAPE
