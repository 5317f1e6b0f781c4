"""TensorRT compatibility lint for exported ONNX graphs (pure graph checks; no torch, `onnx`
imported on first use).

Target: TensorRT 8.5 / 8.6 (JetPack 5.1, 6.0), whose ONNX parser reads opset <= 17 and
explicitly quantised (Q/DQ) INT8 graphs. Rules, by issue code:

- `opset`: the ai.onnx opset is at most 17.
- `unsupported-op`: every node is an ai.onnx op in TENSORRT_OPS (custom domains, e.g. an
  ATen fallback, are not).
- `adaptive-pool`: no adaptive pooling left in the graph (an ATen / custom AdaptiveAvgPool
  op); global ones should be GlobalAveragePool / ReduceMean, others a fixed AveragePool.
- `resize-mode`: Resize mode is nearest or linear (TensorRT has no cubic);
  `resize-coordinates`: no tf_crop_and_resize coordinate mode.
- `qdq-zero-point`: every QuantizeLinear / DequantizeLinear has a constant zero point of 0
  (TensorRT is symmetric only); a QuantizeLinear needs it explicitly (the default is UINT8).
- `dq-int32`: no DequantizeLinear of INT32 (ONNX Runtime's quantised biases; TensorRT keeps
  biases float). `qdq-type`: other Q/DQ types than INT8.
- `qdq-scale`: scales are positive finite constants, per tensor for activations.
- `qdq-placement`: a QuantizeLinear feeds DequantizeLinear nodes only, and a DequantizeLinear
  reads a QuantizeLinear or a constant.
- `qdq-weight`: a DequantizeLinear feeding a Conv / ConvTranspose weight reads an INT8
  initializer, per tensor or per channel on axis 0 (one scale per weight.shape[0]; TensorRT
  quantises ConvTranspose kernels on axis 0 too, NVIDIA/TensorRT#2380).
- `dynamic-input`: every graph input has a static shape.

TENSORRT_OPS is the "Y" rows of onnx-tensorrt's operator matrix for TensorRT 8.5
(docs/operators.md, release/8.5-GA) minus If / Loop / Scan (subgraphs are not linted),
the Random* ops (TensorRT ignores their seed) and ops that are not in opset 17 (Upsample,
Scatter, ImageScaler, ParametricSoftplus, ScaledTanh). The zoo's float exports use Add, Abs,
AveragePool, BatchNormalization, Clip, Concat, Constant, Conv, ConvTranspose, Div, Exp,
GreaterOrEqual, HardSwish, Identity, MatMul, MaxPool, Mul, PRelu, ReduceMax, ReduceMean,
Relu, Reshape, Resize, Shape, Sigmoid, Slice, Softmax, Sub, Transpose, Unsqueeze and Where;
Q/DQ exports add QuantizeLinear and DequantizeLinear.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

MAX_OPSET = 17
TENSORRT_OPS = frozenset('''
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
    Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish Identity
    InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization
    LpPool LRN LSTM MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg
    NonMaxSuppression NonZero Not OneHot Or Pad Pow PRelu QuantizeLinear Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd
    ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Where Xor
'''.split())
RESIZE_MODES = ('nearest', 'linear')
RESIZE_COORDINATES = ('half_pixel', 'pytorch_half_pixel', 'tf_half_pixel_for_nn', 'asymmetric',
                      'align_corners')
_DEFAULT_DOMAINS = ('', 'ai.onnx')
_QDQ = ('QuantizeLinear', 'DequantizeLinear')
_WEIGHT_CONSUMERS = ('Conv', 'ConvTranspose')


@dataclass(frozen=True)
class LintIssue:
    """One TensorRT incompatibility: rule code, node name ('' for the graph), explanation."""

    code: str
    node: str
    message: str

    def __str__(self) -> str:
        return f'[{self.code}] {self.node or "<graph>"}: {self.message}'


class OnnxLintError(ValueError):
    """An ONNX graph failed the TensorRT lint; `issues` holds every problem found."""

    def __init__(self, path: Path | str, issues: list[LintIssue]):
        self.path = path
        self.issues = issues
        listed = '\n'.join(f'  {issue}' for issue in issues)
        super().__init__(f'{path}: {len(issues)} TensorRT lint issue(s):\n{listed}')


def _load(model: onnx.ModelProto | Path | str) -> onnx.ModelProto:
    import onnx

    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def check_onnx(model: onnx.ModelProto | Path | str) -> None:
    """Raises OnnxLintError listing every issue of `lint_onnx`, if any."""
    issues = lint_onnx(model)
    if issues:
        name = '<model>' if not isinstance(model, (str, Path)) else model
        raise OnnxLintError(name, issues)


def has_qdq(model: onnx.ModelProto | Path | str) -> bool:
    """Whether the graph is explicitly quantised (TensorRT then needs its INT8 builder flag)."""
    return any(node.op_type in _QDQ for node in _load(model).graph.node)


class _Graph:
    """Look-ups over one graph: constants, producers, consumers, inferred types and shapes."""

    def __init__(self, model: onnx.ModelProto):
        import onnx
        from onnx import numpy_helper

        self.graph = model.graph
        self.constants: dict[str, Any] = {
            init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[tuple[Any, int]]] = {}
        for node in self.graph.node:
            for name in node.output:
                self.producer[name] = node
            for index, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, index))
            if node.op_type == 'Constant':
                value = next((a for a in node.attribute if a.name == 'value'), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value.t)
        try:  # types / shapes of intermediate tensors; hand-made graphs may not infer
            inferred = onnx.shape_inference.infer_shapes(model).graph
            values = (*inferred.value_info, *inferred.input, *inferred.output)
        except Exception:  # lint what can be linted without them
            values = (*self.graph.value_info, *self.graph.input, *self.graph.output)
        self.types = {v.name: v.type.tensor_type for v in values if v.type.HasField('tensor_type')}

    def elem_type(self, name: str) -> int | None:
        """The ONNX element type of tensor `name`, or None when unknown."""
        from onnx import helper

        if name in self.constants:
            return helper.np_dtype_to_tensor_dtype(self.constants[name].dtype)
        tensor = self.types.get(name)
        return tensor.elem_type if tensor is not None and tensor.elem_type else None

    def dims(self, name: str) -> list[int | None] | None:
        """Static dims of `name` (None for a symbolic one), or None when the rank is unknown."""
        tensor = self.types.get(name)
        if tensor is None or not tensor.HasField('shape'):
            return None
        return [d.dim_value if d.HasField('dim_value') else None for d in tensor.shape.dim]


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _node_names(nodes: Iterable[Any]) -> dict[int, str]:
    return {id(node): node.name or f'<{node.op_type} #{i}>' for i, node in enumerate(nodes)}


def lint_onnx(model: onnx.ModelProto | Path | str) -> list[LintIssue]:
    """Every TensorRT incompatibility of the graph at `model` (a path or a ModelProto), in
    graph order; the module docstring lists the rules. An empty list means it passes."""
    model = _load(model)
    graph = _Graph(model)
    names = _node_names(model.graph.node)
    issues = _lint_opset(model) + _lint_inputs(graph)
    for node in model.graph.node:
        name = names[id(node)]
        adaptive = 'adaptive' in node.op_type.lower() or (
            node.op_type == 'ATen' and 'adaptive' in str(_attr(node, 'operator', '')).lower())
        if adaptive:
            issues.append(_adaptive_issue(graph, node, name))
        elif node.domain not in _DEFAULT_DOMAINS or node.op_type not in TENSORRT_OPS:
            where = f'{node.domain}::' if node.domain not in _DEFAULT_DOMAINS else ''
            issues.append(LintIssue('unsupported-op', name,
                                    f'{where}{node.op_type} is not in the TensorRT op list'))
        elif node.op_type == 'Resize':
            issues += _lint_resize(node, name)
        elif node.op_type in _QDQ:
            issues += _lint_qdq(graph, node, name, names)
    return issues


def _lint_opset(model: onnx.ModelProto) -> list[LintIssue]:
    versions = [op.version for op in model.opset_import if op.domain in _DEFAULT_DOMAINS]
    if not versions:
        return [LintIssue('opset', '', 'no ai.onnx opset import')]
    if max(versions) > MAX_OPSET:
        return [LintIssue('opset', '', f'opset {max(versions)} > {MAX_OPSET} (the highest '
                                       'TensorRT 8.5 / 8.6 read)')]
    return []


def _lint_inputs(graph: _Graph) -> list[LintIssue]:
    issues = []
    for value in graph.graph.input:
        if value.name in graph.constants:  # initializers listed as inputs (old IR)
            continue
        dims = graph.dims(value.name)
        if dims is None or None in dims:
            shape = 'unknown' if dims is None else dims
            issues.append(LintIssue('dynamic-input', value.name,
                                    f'input shape {shape} is not static'))
    return issues


def _adaptive_issue(graph: _Graph, node: Any, name: str) -> LintIssue:
    dims = graph.dims(node.output[0]) if node.output else None
    if dims and len(dims) > 2 and all(d == 1 for d in dims[2:]):
        return LintIssue('adaptive-pool', name, f'{node.op_type} left in the graph (global: '
                                                'export it as GlobalAveragePool / mean)')
    size = 'x'.join('?' if d is None else str(d) for d in dims[2:]) if dims else 'unknown'
    return LintIssue('adaptive-pool', name,
                     f'{node.op_type} with non-global output {size}: TensorRT has no adaptive '
                     'pooling (use an input size the pooling divides, or a fixed AveragePool)')


def _lint_resize(node: Any, name: str) -> list[LintIssue]:
    issues = []
    mode = _attr(node, 'mode', 'nearest')
    if mode not in RESIZE_MODES:
        issues.append(LintIssue('resize-mode', name,
                                f'mode {mode!r}: TensorRT resizes with nearest or linear only'))
    coordinates = _attr(node, 'coordinate_transformation_mode', 'half_pixel')
    if coordinates not in RESIZE_COORDINATES:
        issues.append(LintIssue('resize-coordinates', name,
                                f'coordinate_transformation_mode {coordinates!r} is not '
                                f'supported by TensorRT ({", ".join(RESIZE_COORDINATES)})'))
    return issues


def _lint_qdq(graph: _Graph, node: Any, name: str, names: dict[int, str]) -> list[LintIssue]:
    import numpy as np
    from onnx import TensorProto

    issues = []
    quantize = node.op_type == 'QuantizeLinear'
    x, scale_name = node.input[0], node.input[1]
    zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None

    scale = graph.constants.get(scale_name)
    if scale is None:
        issues.append(LintIssue('qdq-scale', name, f'scale {scale_name!r} is not a constant'))
    elif not (np.isfinite(scale).all() and (scale > 0).all()):
        issues.append(LintIssue('qdq-scale', name, 'scales must be positive and finite'))
    elif quantize and x not in graph.constants and scale.size != 1:
        issues.append(LintIssue('qdq-scale', name, f'{scale.size} activation scales: '
                                                   'TensorRT quantises activations per tensor'))

    if zero_name is None:
        if quantize:
            issues.append(LintIssue('qdq-zero-point', name, 'no zero point: the output would '
                                    'be UINT8; TensorRT needs an INT8 zero point of 0'))
    elif zero_name not in graph.constants:
        issues.append(LintIssue('qdq-zero-point', name,
                                f'zero point {zero_name!r} is not a constant'))
    elif np.any(graph.constants[zero_name] != 0):
        issues.append(LintIssue('qdq-zero-point', name,
                                'zero point is not 0 (TensorRT quantises symmetrically)'))

    # The quantised type: the zero point's, else (DequantizeLinear) its input's.
    if quantize:
        qtype = graph.elem_type(zero_name) if zero_name else None
    else:
        qtype = graph.elem_type(x) or (graph.elem_type(zero_name) if zero_name else None)
    if not quantize and qtype == TensorProto.INT32:
        issues.append(LintIssue('dq-int32', name, 'DequantizeLinear of INT32 (a quantised '
                                'bias?): TensorRT keeps biases float, export them float'))
    elif qtype is not None and qtype != TensorProto.INT8:
        issues.append(LintIssue('qdq-type', name, f'quantised type '
                                f'{TensorProto.DataType.Name(qtype)}: TensorRT needs INT8'))

    if quantize:
        issues += _lint_q_consumers(graph, node, name, names)
    else:
        issues += _lint_dq_source(graph, node, name, scale)
    return issues


def _lint_q_consumers(graph: _Graph, node: Any, name: str,
                      names: dict[int, str]) -> list[LintIssue]:
    out = node.output[0]
    consumers = graph.consumers.get(out, [])
    wrong = [names[id(n)] for n, _ in consumers if n.op_type != 'DequantizeLinear']
    if out in {o.name for o in graph.graph.output}:
        wrong.append('a graph output')
    if not consumers:
        wrong.append('nothing')
    if wrong:
        return [LintIssue('qdq-placement', name, f'QuantizeLinear output feeds {wrong[:3]}: '
                                                 'TensorRT needs every Q followed by a DQ')]
    return []


def _lint_dq_source(graph: _Graph, node: Any, name: str, scale: Any) -> list[LintIssue]:
    x = node.input[0]
    source = graph.producer.get(x)
    constant = x in graph.constants
    issues = []
    if not constant and (source is None or source.op_type != 'QuantizeLinear'):
        issues.append(LintIssue('qdq-placement', name, 'DequantizeLinear reads neither a '
                                                       'QuantizeLinear nor a constant'))
    weight_of = [n for n, index in graph.consumers.get(node.output[0], [])
                 if n.op_type in _WEIGHT_CONSUMERS and index == 1]
    if not weight_of:
        return issues
    if not constant:
        return issues + [LintIssue('qdq-weight', name, f'DequantizeLinear feeding a '
                                   f'{weight_of[0].op_type} weight must read an INT8 '
                                   'initializer (fold the weight QuantizeLinear)')]
    weight = graph.constants[x]
    if scale is None or scale.size == 1:
        return issues
    axis = _attr(node, 'axis', 1)
    axis = axis + weight.ndim if axis < 0 else axis
    if axis != 0 or scale.ndim != 1 or scale.size != weight.shape[0]:
        issues.append(LintIssue('qdq-weight', name, f'weight scales {list(scale.shape)} on '
                                f'axis {axis} of a {list(weight.shape)} kernel: TensorRT needs '
                                'one scale, or one per weight.shape[0] on axis 0'))
    return issues
