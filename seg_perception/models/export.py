"""Torch model -> ONNX file (opset 17, normalisation inside the graph) + sidecar.

Binary networks (deploy mode) can be exported as exact INT8 Q/DQ graphs (`qdq=True`): each
binary conv reads

    x -> sign (GreaterOrEqual, Where) -> QuantizeLinear(1, 0) -> DequantizeLinear(1, 0)
      [-> * DAB scale, float] -> Conv(weight = DequantizeLinear(INT8 +-1, alpha, 0, axis 0))

The INT8 weights are sign(W), the per-output-channel scale is alpha, so DequantizeLinear gives
sign(W) x alpha, the deploy weights, bit for bit; sign activations are +-1, which a scale-1
INT8 round trip keeps. Every export is linted for TensorRT (`core.onnx_lint.check_onnx`); on a
lint failure the .onnx stays for inspection but no sidecar is written, so the runtime will not
load it.

`fp16_weights=True` stores the conv / matmul weights as float16 initializers, each read
through a Cast to float: half the file, the same float graph once the Cast is folded (ONNX
Runtime and TensorRT fold it when they load the model; the ONNX Runtime backend also turns
them back into float initializers before its rewrites). The weights are rounded to float16
once (relative error <= 2^-11), which moves CamVid val scores by hundredths of a point; it
lets the shipped models fit the package's size cap. Not for binary networks (refused): their
sign activations flip under the rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
import warnings

import torch
from torch import nn

from seg_perception.core.artifact import (
    ModelArtifact,
    Normalization,
    sidecar_path,
    write_sidecar,
)
from seg_perception.core.onnx_lint import check_onnx
from seg_perception.models.layers.binary import BinaryConv2d
from seg_perception.models.normalized import Normalized

if TYPE_CHECKING:
    import onnx

ONNX_OPSET = 17  # TensorRT 8.5 / 8.6 (JetPack 5, 6.0) read at most opset 17


def export_onnx(model: nn.Module, out: Path | str, *, model_name: str, class_set: str,
                num_classes: int, input_size: tuple[int, int],
                normalization: Normalization | None = None,
                config_hash: str | None = None, model_options: dict | None = None,
                binarize: dict | None = None, qdq: bool = False,
                fp16_weights: bool = False, lint: bool = True) -> ModelArtifact:
    """Exports `model` (eval mode) with the TorchScript exporter and writes the sidecar.

    Args:
        qdq: Export the binary layers as exact INT8 Q/DQ (module docstring); every binary
            layer must be in deploy mode (`binarize.deploy_model`), ValueError otherwise.
        fp16_weights: Store conv / matmul weights as float16 (module docstring).
        lint: Check the graph with `check_onnx` (OnnxLintError lists every issue); turn off
            only to debug the exporter.
    """
    normalization = normalization or Normalization()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(out).unlink(missing_ok=True)  # no stale sidecar beside a failed export
    if qdq:
        _check_deployed(model)
    if fp16_weights and any(isinstance(m, BinaryConv2d) for m in model.modules()):
        # Sign activations turn the rounding into flipped signs: bisegunet's scores moved by
        # 11 % of their range with fp16 weights (float networks: about 0.1 %).
        raise ValueError('fp16_weights is for float networks; this one has binary layers, '
                         'whose sign activations flip under weight rounding')
    wrapped = Normalized(model.eval(), normalization.mean, normalization.std).eval()
    dummy = torch.zeros(1, 3, *input_size)
    with torch.no_grad(), warnings.catch_warnings(), qdq_export(model, enabled=qdq):
        # The TorchScript exporter is chosen on purpose (the dynamo one stays at opset 18,
        # which TensorRT 8.5 / 8.6 cannot read); its deprecation notice is not news.
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(wrapped, (dummy,), str(out), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=['image'], output_names=['scores'])
    if qdq or fp16_weights:
        import onnx

        graph = onnx.load(str(out))
        if qdq:
            constants_to_initializers(graph)
        if fp16_weights:
            store_weights_fp16(graph)
        onnx.save(graph, str(out))
    if lint:
        check_onnx(out)
    artifact = ModelArtifact(
        path=out, format='onnx', model=model_name, class_set=class_set,
        num_classes=num_classes, input_size=tuple(input_size),
        normalization=Normalization(True, tuple(normalization.mean), tuple(normalization.std)),
        output_kind='logits', config_hash=config_hash, model_options=dict(model_options or {}),
        binarize=binarize)
    write_sidecar(artifact)
    return artifact


def _check_deployed(model: nn.Module) -> None:
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, BinaryConv2d)]
    if not any(m.binary for _, m in layers):
        raise ValueError('qdq export needs binary layers (binarize_model, or a binary model)')
    pending = [name for name, m in layers if m.binary and not m.deployed]
    if pending:
        raise ValueError(f'qdq export needs deploy mode (deploy_model first); not deployed: '
                         f'{pending[:5]}')


@contextmanager
def qdq_export(model: nn.Module, *, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block, every deployed BinaryConv2d of `model` runs its INT8 fake-quantised
    forward (`BinaryConv2d.set_qdq_export`; same values); restored on exit."""
    layers = [m for m in model.modules()
              if enabled and isinstance(m, BinaryConv2d) and m.deployed]
    try:
        for layer in layers:
            layer.set_qdq_export(True)
        yield model
    finally:
        for layer in layers:
            layer.set_qdq_export(False)


def constants_to_initializers(model: onnx.ModelProto, op_types: tuple[str, ...] = (
        'QuantizeLinear', 'DequantizeLinear')) -> int:
    """Turns the Constant nodes read by `op_types` nodes into initializers (same names, so
    the graph computes the same). The tracer writes the INT8 weights and the Q/DQ scales as
    Constant nodes; as initializers they are plain weights to every tool (and the lint).

    Returns:
        How many Constant nodes were moved.
    """
    from onnx import numpy_helper

    graph = model.graph
    wanted = {name for node in graph.node if node.op_type in op_types for name in node.input}
    moved = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == 'value'), None)
        if node.op_type == 'Constant' and node.output[0] in wanted and value is not None:
            moved.append(node)
            graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(value.t), node.output[0]))
    for node in moved:
        graph.node.remove(node)
    return len(moved)


FP16_SUFFIX = '__fp16'
_FP16_CONSUMERS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')


def store_weights_fp16(model: onnx.ModelProto, min_size: int = 64) -> int:
    """Float32 initializers of at least `min_size` values read only as Conv / ConvTranspose /
    Gemm / MatMul inputs become float16 initializers `<name>__fp16` with a Cast to float
    named `<name>` (so every consumer reads the same name). Values outside float16's range are
    left float32. Returns how many were converted."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    # Initializers that are also graph inputs or outputs keep their name and type.
    outputs = {o.name for o in graph.output} | {i.name for i in graph.input}
    casts, kept = [], []
    for init in graph.initializer:
        ops = readers.get(init.name, set())
        array = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        if (array is None or array.size < min_size or not ops or init.name in outputs
                or not ops <= set(_FP16_CONSUMERS)
                or not np.all(np.abs(array) <= np.finfo(np.float16).max)):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(array.astype(np.float16), init.name + FP16_SUFFIX))
        casts.append(helper.make_node('Cast', [init.name + FP16_SUFFIX], [init.name],
                                      to=TensorProto.FLOAT, name=init.name + '_cast'))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the Casts first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)
