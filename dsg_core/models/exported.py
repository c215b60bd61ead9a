"""torch.export programs as eager modules: batch-norm, conv, linear and ReLU graph nodes become modules.

In ``ExportedProgram.module()`` every layer is a ``call_function`` node (``aten.batch_norm``,
``aten.conv2d``, ...) reading its tensors through ``get_attr``: there is no ``nn.BatchNorm2d`` to hook
for per-sample statistics, no ``nn.Conv2d`` to fake-quantize and no ``nn.ReLU`` to put an activation
quantizer after. :func:`modularize` rewrites those nodes into ``call_module`` nodes of real
``nn.BatchNorm2d`` / ``nn.Conv2d`` / ``nn.Linear`` / ``nn.ReLU`` submodules holding the same tensors, the
way PT2E quantization rewrites an exported graph, so that generation (``BNStats``), BN folding and
the quantizer's module swaps work on it unchanged. A module takes the name of the module that owned
its tensors at export (``layers.0.bn1``), so names match the eager network's.
"""

from __future__ import annotations

import operator
from pathlib import Path

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import ModelError

aten = torch.ops.aten

EXPORT_RECIPE = ("export it with a dynamic batch dimension: ep = torch.export.export(model.eval(), "
                 "(torch.zeros(2, C, H, W),), dynamic_shapes=({0: torch.export.Dim('batch')},)); "
                 "torch.export.save(ep, 'model.pt2')")

# op -> positions of (weight, bias, running_mean, running_var, momentum, eps); the second returns a tuple
_BN_ARGS = {aten.batch_norm.default: (1, 2, 3, 4, 6, 7),
            aten._native_batch_norm_legit_no_training.default: (1, 2, 3, 4, 5, 6)}
_RELU_OPS = {aten.relu.default: nn.ReLU, aten.relu_.default: nn.ReLU}
_HARDTANH_OPS = (aten.hardtanh.default, aten.hardtanh_.default)


def load_exported(path: str | Path) -> tuple[nn.Module, tuple[int, ...]]:
    """A ``.pt2`` file as a modularized eager network, and the (C, H, W) its input was exported with.

    A program whose batch dimension is fixed is refused: generation and evaluation use other batch sizes.
    """
    path = Path(path)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:  # a foreign or truncated file: say so, no traceback
        raise ModelError(f"cannot load {path.name} as a torch.export program: {type(exc).__name__}") from None
    shape = input_shape_of(ep)
    return modularize(ep.module()), shape


def input_shape_of(ep: torch.export.ExportedProgram) -> tuple[int, ...]:
    """(C, H, W) of the program's single image input; ModelError for a fixed batch or another signature."""
    user_inputs = [s for s in ep.graph_signature.input_specs
                   if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    if len(user_inputs) != 1:
        raise ModelError(f"the program takes {len(user_inputs)} inputs; a classifier takes one image batch")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0].arg.name)
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() < 2:
        raise ModelError("the program's input is not an image batch tensor")
    if isinstance(val.shape[0], int):
        raise ModelError(f"the program was exported with a fixed batch size of {val.shape[0]}; {EXPORT_RECIPE}")
    return tuple(int(d) if isinstance(d, int) else -1 for d in val.shape[1:])


def modularize(gm: fx.GraphModule) -> fx.GraphModule:
    """A GraphModule computing the same function with BN / conv / linear / ReLU nodes as submodules."""
    gm = fx.GraphModule(gm, gm.graph)  # a plain GraphModule: train()/eval() and deepcopy behave as usual
    graph, taken = gm.graph, set(dict(gm.named_modules()))
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        module, tensors = _module_for(gm, node)
        if module is None:
            continue
        name = _place(gm, module, tensors, node.name, taken)
        with graph.inserting_before(node):
            new = graph.call_module(name, (node.args[1 if node.target is aten.addmm.default else 0],))
        new.meta = dict(node.meta)
        if node.target is aten._native_batch_norm_legit_no_training.default:
            for user in list(node.users):
                user.replace_all_uses_with(new)
                graph.erase_node(user)
            new.meta["val"] = node.meta["val"][0] if "val" in node.meta else None
        else:
            node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _attr(gm: fx.GraphModule, arg) -> tuple[str, torch.Tensor] | None:
    """(target, tensor) of a get_attr argument; None for anything else."""
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        value = _fetch(gm, arg.target)
        return (arg.target, value) if isinstance(value, torch.Tensor) else None
    return None


def _fetch(gm: nn.Module, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _arg(node: fx.Node, i: int, default):
    return node.args[i] if len(node.args) > i else default


def _module_for(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module | None, dict[str, str]]:
    """The module replacing ``node`` and {its tensor name: get_attr target}, or (None, {}) to leave it."""
    if node.target in _BN_ARGS:
        return _batch_norm(gm, node)
    if node.target in (aten.conv2d.default, aten.convolution.default):
        return _conv(gm, node)
    if node.target is aten.linear.default:
        w, b = _attr(gm, _arg(node, 1, None)), _attr(gm, _arg(node, 2, None))
        if w is None or (_arg(node, 2, None) is not None and b is None):
            return None, {}
        m = nn.Linear(w[1].shape[1], w[1].shape[0], bias=b is not None)
        return _filled(m, weight=w, bias=b)
    if node.target is aten.addmm.default:  # a decomposed linear: addmm(bias, x, weight.t())
        return _addmm(gm, node)
    if node.target in _RELU_OPS:
        return nn.ReLU(), {}
    if node.target in _HARDTANH_OPS and tuple(node.args[1:3]) == (0.0, 6.0):
        return nn.ReLU6(), {}
    return None, {}


def _addmm(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module | None, dict[str, str]]:
    bias, mat = _attr(gm, node.args[0]), node.args[2]
    transposed = isinstance(mat, fx.Node) and mat.op == "call_function" and (
        mat.target is aten.t.default or (mat.target is aten.permute.default and list(mat.args[1]) == [1, 0]))
    w = _attr(gm, mat.args[0]) if transposed else None
    if w is None or bias is None or node.kwargs or w[1].dim() != 2 or bias[1].dim() != 1:
        return None, {}
    return _filled(nn.Linear(w[1].shape[1], w[1].shape[0]), weight=w, bias=bias)


def _batch_norm(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module | None, dict[str, str]]:
    iw, ib, im, iv, imom, ieps = _BN_ARGS[node.target]
    w, b, mean, var = (_attr(gm, _arg(node, i, None)) for i in (iw, ib, im, iv))
    if mean is None or var is None or (_arg(node, iw, None) is not None and w is None):
        return None, {}
    if node.target is aten._native_batch_norm_legit_no_training.default and any(
            u.target is not operator.getitem or u.args[1] != 0 for u in node.users):
        return None, {}  # the saved statistics are used: not an inference batch-norm
    if node.target is aten.batch_norm.default and _arg(node, 5, False):
        return None, {}  # exported in training mode: no running statistics are used
    val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    dims = val.dim() if isinstance(val, torch.Tensor) else 4
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(dims)
    if cls is None:
        return None, {}
    m = cls(mean[1].numel(), eps=float(_arg(node, ieps, 1e-5)), momentum=float(_arg(node, imom, 0.1)),
            affine=w is not None)
    return _filled(m, weight=w, bias=b, running_mean=mean, running_var=var)


def _conv(gm: fx.GraphModule, node: fx.Node) -> tuple[nn.Module | None, dict[str, str]]:
    w, b = _attr(gm, _arg(node, 1, None)), _attr(gm, _arg(node, 2, None))
    if w is None or w[1].dim() != 4 or (_arg(node, 2, None) is not None and b is None):
        return None, {}
    if node.target is aten.convolution.default:
        stride, padding, dilation, transposed, _, groups = node.args[3:9]
        if transposed:
            return None, {}
    else:
        stride, padding, dilation, groups = (_arg(node, 3, 1), _arg(node, 4, 0), _arg(node, 5, 1),
                                             _arg(node, 6, 1))
    if isinstance(padding, str):
        return None, {}
    out_c, in_per_group, kh, kw = w[1].shape
    m = nn.Conv2d(in_per_group * groups, out_c, (kh, kw), stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias=b is not None)
    return _filled(m, weight=w, bias=b)


@torch.no_grad()
def _filled(m: nn.Module, **tensors) -> tuple[nn.Module, dict[str, str]]:
    """``m`` holding copies of the graph's tensors (same dtype and device)."""
    for key, found in tensors.items():
        if found is None:
            continue
        target, value = found
        current = getattr(m, key)
        if isinstance(current, nn.Parameter):
            setattr(m, key, nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad))
        else:
            setattr(m, key, value.detach().clone())
    return m.eval(), {key: found[0] for key, found in tensors.items() if found is not None}


def _place(gm: fx.GraphModule, module: nn.Module, tensors: dict[str, str], fallback: str, taken: set[str]) -> str:
    """Install ``module`` where its tensors lived (``bn1.weight`` -> ``bn1``) when that submodule held
    exactly these tensors and nothing else; otherwise under a new name at the root."""
    owners = {t.rpartition(".")[0] for t in tensors.values()}
    leaves = {k: t.rpartition(".")[2] for k, t in tensors.items()}
    if len(owners) == 1 and (owner := owners.pop()) and all(k == v for k, v in leaves.items()):
        old = gm.get_submodule(owner)
        own = {n for n, _ in old.named_parameters(recurse=False)} | {n for n, _ in old.named_buffers(recurse=False)}
        if type(old) is nn.Module and not list(old.children()) and own <= set(tensors) | {"num_batches_tracked"}:
            parent, _, leaf = owner.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, leaf, module)
            return owner
    name = fallback
    while name in taken or hasattr(gm, name):
        name = f"_{name}"
    gm.add_submodule(name, module)
    taken.add(name)
    return name
