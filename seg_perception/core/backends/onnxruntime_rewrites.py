"""Graph rewrites for ONNX Runtime's CPU provider, applied in memory when the ONNX Runtime
backend loads a model. The file on disk, which TensorRT builds its engines from, is unchanged.

Each rewrite replaces a pattern ORT runs slowly by ops it runs fast and computes the same
values, up to float rounding where said (timings: 360x480, one thread, AVX-512 Xeon):

* PRelu (per-channel slope). ORT's PRelu kernel is several times slower than its other
  elementwise kernels, and ORT cannot keep it in its blocked NCHWc layout, so every PRelu
  also costs a reorder out of and back into that layout around it (FBSNet: PRelu 52 % and
  reorders 15 % of the time; 40-45 % faster rewritten). Where x is a conv output with whole
  NCHWc blocks of channels, it becomes x + (1 - slope) * Relu(-x) with both scalings written
  as BatchNormalization, which ORT runs as NCHWc depthwise 1x1 convs with the Relu and the
  Add fused into them: for x < 0 it rounds three times instead of once (within a few
  2^-24 |x|). Elsewhere it becomes Max(x, x * slope) (every slope <= 1), bit-exact.
* Convs with few output channels and wide kernels (BiSegUNet's 7x7 convs to 4 and 8 channels
  at full and half resolution). MLAS computes output channels in whole NCHWc blocks, so these
  do 2-4x the multiply-adds they need; split into a kh x 1 conv to one channel per output
  channel and kernel column, a 1 x kw depthwise shift and a 1x1 sum, the same sums (in
  another order) fill the blocks: 1.7-2x faster per conv, BiSegUNet 8-14 % faster.
* Parallel convs of one tensor, concatenated (BiSegUNet's Multi-Stream Gateway: 3x3, 5x5 and
  7x7 convs of the image to 4, 4 and 8 channels) -> one conv with each kernel zero-padded in
  place (`parallel_convs_to_one`): MLAS pads each conv's outputs to whole NCHWc blocks, so the
  three did the work of 48 channels, and the Concat with its reorders came on top. The same
  sums plus zero products. BiSegUNet's float graph 179 -> 171 ms, outputs bit-identical here.
* The sign of the float deploy export, Where(x >= 0, 1, -1) (`models.layers.binary.sign`).
  Neither GreaterOrEqual nor Where has an NCHWc kernel, so each sign also costs a reorder out
  of the layout and one back in (BiSegUNet's float graph, one thread: the two ops 16 % of the
  time, reorders 11 %). Where x has whole NCHWc blocks of channels, it becomes
  h = HardSigmoid(x; alpha 2^127, beta 1) -> Clip(2^23 h + (1 - 2^23), -1, 1) (the affine
  step a depthwise 1x1 Conv), ops ORT keeps in NCHWc (the HardSigmoid fuses into the conv ORT
  makes of the BatchNormalization before it, the Clip into the 1x1 Conv), bit-exact for every x
  but NaN: h = 1 for every x >= 0 (-0 too, as in x >= 0), h <= 1 - 2^-22 for every x < 0 (the
  least |x|, 2^-149, gives 1 - 2^-22, and 1's half ulp below is 2^-25), large |x| overflow
  to +-inf and clip; 2^23 h is exact (a power of two times h in [0, 1]) and 1 - 2^23 is a
  float, so h = 1 gives exactly 1 and every h <= 1 - 2^-22 a sum <= -1 (rounding is
  monotone), which the Clip makes -1. BiSegUNet's float graph: 200 -> 174 ms at one thread
  with the first form, HardSigmoid -> HardSigmoid(2^24, 1 - 2^24) -> 2 g - 1, whose second
  HardSigmoid stayed a pass of its own (18 in BiSegUNet, 6 ms); outputs identical.
* Binary convs of the exact INT8 Q/DQ export (`models.export`). ORT runs DequantizeLinear ->
  float Conv (it fuses Conv into integer kernels only when the output is quantised too, and
  a binary conv's output is not), and the DequantizeLinear weights also keep the conv out of
  the NCHWc layout and block BatchNormalization folding: slower than the float graph. Here the
  pattern sign -> Q/DQ(scale 1) -> Conv(DQ(INT8 +-1, alpha)) becomes
  Conv(sign, W in {-1, 0, 1} as float) -> * alpha: every partial sum of +-1 products is an
  integer below 2^24 in magnitude, exact in float32 whatever the order, and zero padding adds
  0, so the conv yields the exact integer sum that TensorRT's INT8 kernel yields, and one
  rounding by alpha follows: the correctly rounded result (the float graph, with +-alpha
  weights, rounds at every addition instead). ONNX Runtime's ConvMulFusion would fold the
  constant Mul back into the weights, so the backend disables it for graphs with such convs
  (`EXACT_FLOAT_DISABLED_OPTIMIZERS`; any other constant Mul after a conv in them then stays
  a separate op: time, not accuracy).
  With the sign rewrite above, the whole binary path stays in NCHWc.
  History: this was ConvInteger on UINT8 {0, 2} with zero point 1, also exact, 1.16-1.23x ->
  1.00-1.02x the float graph's time before the sign rewrite and 1.09x after it (ORT's integer
  convs are NCHW only and no faster than MLAS's float ones: one 128 -> 128 channel 3x3 binary
  conv at 45x60, one thread, ORT 1.31, AVX-512 VNNI Xeon: float Conv 7.0 ms, ConvInteger
  UINT8 x UINT8 8.4-9.2 ms, UINT8 x INT8 54-64 ms, INT8 x INT8 60-66 ms).
  MatMulInteger UINT8 x INT8 does use the VNNI kernels (2700 x 1152 by 1152 x 128: 1.8 ms
  against a float MatMul's 6.2 ms, exact), and an im2col (Transpose to NHWC, Pad with the
  zero point, one Gather of rows) in front of it runs a 3x3 binary conv in 0.36x (256
  channels at 23x30) to 0.6x (128 at 45x60) of the float conv's time, exactly; but 1.1-1.3x
  for 64 channels at 90x120 or 32 at 180x240 (the im2col and the float output transpose
  cost more than the product saves). Not used, because it cannot reach the 0.6x target
  either: BiSegUNet's 19 binary convs took 73 of the Q/DQ graph's 270 ms (profiled, one
  thread, before the sign rewrite), and the float layers around them are the same in both
  graphs, so even binary convs that cost nothing would leave the Q/DQ graph at about 0.66x of
  the float one (with every rewrite here and the blocked layout: 37 ms of binary convs and
  10 ms of alpha scalings in 177 ms, so about 0.73x). The INT8 speed-up this deployment is
  for is TensorRT's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


# Session optimisers to disable where `binary_conv_to_exact_float` replaced anything.
EXACT_FLOAT_DISABLED_OPTIMIZERS = ('ConvMulFusion',)


def rewrite_for_onnxruntime(model: onnx.ModelProto) -> dict[str, int]:
    """Applies every rewrite to `model` in place.

    Returns:
        How many nodes each rewrite replaced (only those that replaced any).
    """
    counts = {'fp16_weights': fp16_weights_to_float(model),
              'parallel_convs': parallel_convs_to_one(model),
              'binary_conv': binary_conv_to_exact_float(model),
              'sign': sign_to_hard_sigmoids(model),
              'narrow_conv': narrow_conv_to_column_split(model),
              'prelu': prelu_to_fast_forms(model)}
    return {name: n for name, n in counts.items() if n}


def fp16_weights_to_float(model: onnx.ModelProto) -> int:
    """Undoes `models.export.store_weights_fp16` in memory: each Cast to float of a float16
    initializer becomes a float32 initializer of the Cast's output name, so the other rewrites
    see plain constant weights. ORT would fold the Cast itself, to the same values (float16 ->
    float32 is exact). Returns the count."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    half = {init.name: init for init in graph.initializer
            if init.data_type == TensorProto.FLOAT16}
    casts = [node for node in graph.node if node.op_type == 'Cast' and node.input[0] in half
             and any(a.name == 'to' and a.i == TensorProto.FLOAT for a in node.attribute)]
    for node in casts:
        array = numpy_helper.to_array(half[node.input[0]]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        graph.node.remove(node)
    still_read = {name for node in graph.node for name in node.input}
    for name, init in half.items():
        if name not in still_read:
            graph.initializer.remove(init)
    return len(casts)


def inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Tensor name -> inferred dims (None where unknown), for every tensor whose rank ONNX
    shape inference finds."""
    import onnx

    # data_prop: through Shape -> Concat into Resize sizes, so that the shapes after a Resize
    # are known too.
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception:  # a graph data propagation cannot take: plain inference
        inferred = onnx.shape_inference.infer_shapes(model).graph
    return {info.name: tuple(d.dim_value if d.HasField('dim_value') else None
                             for d in info.type.tensor_type.shape.dim)
            for info in (*inferred.value_info, *inferred.input, *inferred.output)
            if info.type.tensor_type.HasField('shape')}


@cache
def nchwc_block_size() -> int:
    """Channels per block of ORT's NCHWc layout on this CPU (MLAS: 16 with AVX-512F, 8 with
    AVX2), 0 where ORT does not use the layout (e.g. ARM) or the flags are unreadable."""
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return 0
    flags = next((line.split(':', 1)[1].split() for line in text.splitlines()
                  if line.startswith('flags')), [])
    return 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 0


def prelu_to_fast_forms(model: onnx.ModelProto, block: int | None = None) -> int:
    """PRelu with a constant per-channel slope on a 4-D input -> the forms in the module
    docstring. `block` is the NCHWc block size (default: this CPU's). Returns the count."""
    from onnx import helper

    block = nchwc_block_size() if block is None else block
    graph = _Graph(model, shapes=True)
    replaced = 0
    for node in list(model.graph.node):
        if node.op_type != 'PRelu':
            continue
        slope = graph.constant(node.input[1])
        rank = graph.rank(node.input[0])
        if slope is None or rank != 4 or slope.dtype != np.float32:
            continue
        channels = slope.size
        if slope.shape not in ((channels, 1, 1), (1, channels, 1, 1)):
            continue
        x, y = node.input[0], node.output[0]
        name = graph.fresh(node.name or y)
        # The NCHWc form pays only where x is in that layout already: a conv output, or a
        # BatchNormalization's (ORT runs those as NCHWc convs; the exact binary convs' BNs).
        if block and channels % block == 0 and any(
                graph.producer(x, op) is not None for op in ('Conv', 'BatchNormalization')):
            ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
            bn = [graph.initializer(f'{name}/{suffix}', value) for suffix, value in (
                ('minus_one', -ones), ('zero', zeros), ('one', ones),
                ('one_minus_slope', (1 - slope.reshape(-1)).astype(np.float32)))]
            minus_one, zero, one, one_minus_slope = bn
            # epsilon 0 and variance 1: BatchNormalization is exactly scale * x + 0.
            nodes = [
                helper.make_node('BatchNormalization', [x, minus_one, zero, zero, one],
                                 [f'{name}/neg'], epsilon=0.0, name=f'{name}/neg'),
                helper.make_node('Relu', [f'{name}/neg'], [f'{name}/relu_neg'],
                                 name=f'{name}/relu_neg'),
                helper.make_node('BatchNormalization',
                                 [f'{name}/relu_neg', one_minus_slope, zero, zero, one],
                                 [f'{name}/scaled'], epsilon=0.0, name=f'{name}/scaled'),
                helper.make_node('Add', [x, f'{name}/scaled'], [y], name=f'{name}/add'),
            ]
        elif (slope <= 1).all():
            # x >= 0: x >= slope * x; x < 0: slope * x >= x. Max picks the PRelu value exactly.
            nodes = [helper.make_node('Mul', [x, node.input[1]], [f'{name}/scaled'],
                                      name=f'{name}/scaled'),
                     helper.make_node('Max', [x, f'{name}/scaled'], [y], name=f'{name}/max')]
        else:
            continue
        graph.replace(node, nodes)
        replaced += 1
    graph.commit()
    return replaced


def sign_to_hard_sigmoids(model: onnx.ModelProto, block: int | None = None) -> int:
    """Where(GreaterOrEqual(x, 0), 1, -1) on float x with whole NCHWc blocks of channels -> the
    HardSigmoid form of the module docstring. `block` is the NCHWc block size (default: this
    CPU's). Runs after `binary_conv_to_exact_float`, whose convs then read these signs.
    Returns the count."""
    from onnx import helper

    block = nchwc_block_size() if block is None else block
    if not block:
        return 0
    graph = _Graph(model, shapes=True)
    replaced = 0
    for node in list(model.graph.node):
        if node.op_type != 'Where':
            continue
        greater_equal = graph.producer(node.input[0], 'GreaterOrEqual')
        if greater_equal is None:
            continue
        zero, plus, minus = (graph.constant(name) for name in (
            greater_equal.input[1], node.input[1], node.input[2]))
        if any(v is None or v.size != 1 or v.dtype != np.float32 for v in (zero, plus, minus)):
            continue
        if (float(zero), float(plus), float(minus)) != (0.0, 1.0, -1.0):
            continue
        x = greater_equal.input[0]
        shape = graph.shape(x)
        if shape is None or len(shape) != 4 or not shape[1] or shape[1] % block:
            continue
        channels = shape[1]
        name = graph.fresh(node.name or node.output[0])
        weight = graph.initializer(f'{name}/two_pow_23',
                                   np.full((channels, 1, 1, 1), 2.0 ** 23, np.float32))
        bias = graph.initializer(f'{name}/one_minus_two_pow_23',
                                 np.full(channels, 1.0 - 2.0 ** 23, np.float32))
        low, high = (graph.initializer(f'{name}/{suffix}', np.float32(value))
                     for suffix, value in (('minus_one', -1.0), ('plus_one', 1.0)))
        graph.replace(node, [
            helper.make_node('HardSigmoid', [x], [f'{name}/at_least_zero'],
                             alpha=float(2.0 ** 127), beta=1.0, name=f'{name}/at_least_zero'),
            # A depthwise 1x1 Conv (not a BatchNormalization): ORT fuses a Clip only into a
            # Conv, and keeps the pair in NCHWc.
            helper.make_node('Conv', [f'{name}/at_least_zero', weight, bias],
                             [f'{name}/spread'], group=channels, name=f'{name}/spread'),
            helper.make_node('Clip', [f'{name}/spread', low, high], [node.output[0]],
                             name=f'{name}/plus_minus_one'),
        ])
        replaced += 1
    graph.commit()
    return replaced


def parallel_convs_to_one(model: onnx.ModelProto) -> int:
    """Concat(axis 1) of convs that all read one tensor (each optionally followed by the same
    activation) -> one conv whose kernel holds each conv's kernel, zero-padded in place, and
    whose outputs are theirs in the Concat's order; then the activation once. BiSegUNet's
    Multi-Stream Gateway (3x3, 5x5, 7x7 convs of the image to 4, 4 and 8 channels) becomes one
    7x7 conv to 16: MLAS computes output channels in whole NCHWc blocks, so the three convs
    did the work of 48 channels and the Concat and its reorders came on top. Each output is
    the same sum plus zero products (finite inputs), in another order. Returns the number of
    Concats replaced."""
    from onnx import helper

    graph = _Graph(model)
    readers = Counter(name for node in model.graph.node for name in node.input if name)
    live = {out.name for out in model.graph.output}
    replaced = 0
    for concat in list(model.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in concat.attribute}
        if concat.op_type != 'Concat' or attrs.get('axis') not in (1, -3) \
                or len(concat.input) < 2:
            continue
        parts = [_conv_branch(graph, name, readers, live) for name in concat.input]
        if any(part is None for part in parts):
            continue
        convs, acts = zip(*parts, strict=True)
        merged = _merged_conv(graph, convs)
        if merged is None or len({_node_key(graph, a) for a in acts}) != 1:
            continue
        weight, bias, attributes = merged
        name = graph.fresh(concat.name or concat.output[0])
        act = acts[0]
        conv_out = concat.output[0] if act is None else f'{name}/conv'
        nodes = [helper.make_node(
            'Conv', [convs[0].input[0], graph.initializer(f'{name}/w', weight),
                     graph.initializer(f'{name}/b', bias)], [conv_out], name=f'{name}/conv',
            **attributes)]
        if act is not None:
            merged_act = helper.make_node(act.op_type, [conv_out, *act.input[1:]],
                                          list(concat.output), name=f'{name}/act')
            merged_act.attribute.extend(act.attribute)
            nodes.append(merged_act)
        graph.replace(concat, nodes)
        replaced += 1
    graph.commit()
    return replaced


# Activations that act on each element alone, so one after the merged conv is theirs.
_ELEMENTWISE_ACTS = frozenset({'Relu', 'LeakyRelu', 'Clip', 'Sigmoid', 'HardSigmoid', 'Tanh',
                               'Elu', 'HardSwish'})


def _conv_branch(graph: _Graph, name: str, readers: Counter, live: set):
    """(Conv, activation or None) producing `name`, each read only by the next; else None."""
    node = graph.producer(name)
    act = None
    if node is not None and node.op_type in _ELEMENTWISE_ACTS:
        act, node = node, graph.producer(node.input[0])
        if node is None or readers[node.output[0]] != 1 or node.output[0] in live:
            return None
    if node is None or node.op_type != 'Conv' or readers[name] != 1 or name in live:
        return None
    return node, act


def _node_key(graph: _Graph, node) -> tuple | None:
    """What makes two activations compute the same: type, attributes, constant inputs."""
    if node is None:
        return None
    values = [(i, graph.constant(i) if i else None) for i in node.input[1:]]
    consts = tuple(None if not i else ('tensor', i) if v is None else tuple(np.ravel(v).tolist())
                   for i, v in values)
    return node.op_type, tuple(sorted((a.name, str(a)) for a in node.attribute)), consts


def _merged_conv(graph: _Graph, convs) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(weight, bias, Conv attributes) of one conv computing every conv in `convs` (one
    input, group 1, same strides and dilations, explicit pads, kernels that line up when
    centred by their pads), their outputs in order; None where they do not combine."""
    from onnx import helper

    if len({conv.input[0] for conv in convs}) != 1:
        return None
    weights, biases, geometry = [], [], []
    for conv in convs:
        a = {x.name: helper.get_attribute_value(x) for x in conv.attribute}
        weight = graph.constant(conv.input[1])
        bias = graph.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else \
            np.zeros(0 if weight is None else weight.shape[0], np.float32)
        if weight is None or bias is None or weight.ndim != 4 or weight.dtype != np.float32 \
                or a.get('group', 1) != 1 or a.get('auto_pad', b'NOTSET') not in (b'NOTSET',
                                                                                  'NOTSET'):
            return None
        weights.append(weight)
        biases.append(bias.astype(np.float32))
        geometry.append((tuple(a.get('strides', [1, 1])), tuple(a.get('dilations', [1, 1])),
                         tuple(a.get('pads', [0, 0, 0, 0]))))
    strides, dilations = geometry[0][:2]
    if any(g[:2] != (strides, dilations) for g in geometry) \
            or len({w.shape[1] for w in weights}) != 1:
        return None
    kernel, pads, offsets = [], [0, 0, 0, 0], []
    for axis in (0, 1):  # H, W: offset of each kernel in the merged one, from its pad
        dil = dilations[axis]
        begin = max(g[2][axis] for g in geometry)
        offs = []
        for g in geometry:
            shift, rest = divmod(begin - g[2][axis], dil)
            if rest:
                return None
            offs.append(shift)
        size = max(o + w.shape[2 + axis] for o, w in zip(offs, weights, strict=True))
        ends = {g[2][axis + 2] + dil * (size - o - w.shape[2 + axis])
                for o, w, g in zip(offs, weights, geometry, strict=True)}
        if len(ends) != 1:   # the convs' output sizes would differ
            return None
        kernel.append(size)
        pads[axis], pads[axis + 2] = begin, ends.pop()
        offsets.append(offs)
    merged = np.zeros((sum(w.shape[0] for w in weights), weights[0].shape[1], *kernel),
                      np.float32)
    row = 0
    for k, weight in enumerate(weights):
        cout, _, kh, kw = weight.shape
        top, left = offsets[0][k], offsets[1][k]
        merged[row:row + cout, :, top:top + kh, left:left + kw] = weight
        row += cout
    return merged, np.concatenate(biases), {'strides': list(strides),
                                            'dilations': list(dilations), 'pads': pads}


def narrow_conv_to_column_split(model: onnx.ModelProto, block: int | None = None) -> int:
    """Stride-1 convs with a constant kh x kw kernel (kw >= 5), whole NCHWc blocks of input
    channels and too few output channels to fill blocks -> three convs: a kh x 1 conv to
    cout * kw channels (one per output channel and kernel column), a 1 x kw depthwise conv that
    shifts each column into place (one tap of weight 1), a 1x1 conv summing the kw columns
    (+ bias). MLAS pads output channels to whole blocks, so a 7x7 conv to 4 channels does 4x
    the work it needs; split, the big conv has 28 outputs (2 blocks). Same sums in another
    order. Returns the count."""
    from onnx import helper

    block = nchwc_block_size() if block is None else block
    if not block:
        return 0
    graph = _Graph(model)
    replaced = 0
    for conv in list(model.graph.node):
        weight = graph.constant(conv.input[1]) if conv.op_type == 'Conv' else None
        if weight is None or weight.ndim != 4 or weight.dtype != np.float32:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        cout, cin, kh, kw = weight.shape
        if (attrs.get('group', 1) != 1 or any(s != 1 for s in attrs.get('strides', [1, 1]))
                or attrs.get('auto_pad', b'NOTSET') not in (b'NOTSET', 'NOTSET') or kw < 5
                or cin % block):  # MLAS blocks the input too only then (else no gain measured)
            continue
        blocks = -(-cout * kw // block) * block  # the split's wide conv, whole blocks
        before = -(-cout // block) * block * cin * kh * kw
        after = blocks * cin * kh + blocks * kw + -(-cout // block) * block * blocks
        if after > 0.65 * before:  # measured: 7x7 16 -> 4 2.0x, 32 -> 8 1.7x faster
            continue
        dil_h, dil_w = attrs.get('dilations', [1, 1])
        top, left, bottom, right = attrs.get('pads', [0, 0, 0, 0])
        rows = np.zeros((blocks, cin, kh, 1), np.float32)
        rows[:cout * kw] = weight.transpose(0, 3, 1, 2).reshape(cout * kw, cin, kh, 1)
        shift = np.zeros((blocks, 1, 1, kw), np.float32)
        shift[np.arange(cout * kw), 0, 0, np.tile(np.arange(kw), cout)] = 1
        total = np.zeros((cout, blocks, 1, 1), np.float32)
        total[np.repeat(np.arange(cout), kw), np.arange(cout * kw)] = 1
        name = graph.fresh(conv.name or conv.output[0])
        bias = [conv.input[2]] if len(conv.input) > 2 and conv.input[2] else []
        graph.replace(conv, [
            helper.make_node('Conv', [conv.input[0], graph.initializer(f'{name}/rows_w', rows)],
                             [f'{name}/rows'], name=f'{name}/rows', pads=[top, 0, bottom, 0],
                             dilations=[dil_h, 1]),
            helper.make_node('Conv', [f'{name}/rows', graph.initializer(f'{name}/shift_w', shift)],
                             [f'{name}/shifted'], name=f'{name}/shift', group=blocks,
                             pads=[0, left, 0, right], dilations=[1, dil_w]),
            helper.make_node('Conv', [f'{name}/shifted', graph.initializer(f'{name}/sum_w', total),
                                      *bias], list(conv.output), name=f'{name}/sum'),
        ])
        replaced += 1
    graph.commit()
    return replaced


def binary_conv_to_exact_float(model: onnx.ModelProto) -> int:
    """Binary Q/DQ convs (module docstring) -> float Conv(sign, W in {-1, 0, 1}) + Mul(alpha)
    (+ Add(bias)). Returns the count; convs whose pattern or constants differ in any way are
    left as they are. The session must not fold the Mul into the conv (ONNX Runtime's
    ConvMulFusion would make the weights +-alpha again): `EXACT_FLOAT_DISABLED_OPTIMIZERS`."""
    from onnx import helper

    graph = _Graph(model)
    replaced = 0
    for conv in list(model.graph.node):
        match = _match_binary_conv(graph, conv)
        if match is None:
            continue
        sign, weights, alpha = match
        name = graph.fresh(conv.name or conv.output[0])
        float_conv = helper.make_node(
            'Conv', [sign, graph.initializer(f'{name}/w_pm1', weights.astype(np.float32))],
            [f'{name}/sum'], name=f'{name}/sum')
        float_conv.attribute.extend(conv.attribute)
        out = conv.output[0]
        scale_out = out if len(conv.input) < 3 or not conv.input[2] else f'{name}/scaled'
        nodes = [float_conv,
                 helper.make_node('Mul', [f'{name}/sum', graph.initializer(
                     f'{name}/alpha', alpha.reshape(-1, 1, 1))], [scale_out],
                                  name=f'{name}/scaled')]
        if scale_out != out:
            bias = graph.constant(conv.input[2])
            nodes.append(helper.make_node('Add', [scale_out, graph.initializer(
                f'{name}/bias', bias.astype(np.float32).reshape(-1, 1, 1))], [out],
                                          name=f'{name}/bias'))
        graph.replace(conv, nodes)
        replaced += 1
    graph.commit()
    return replaced


def _match_binary_conv(graph: _Graph, conv: onnx.NodeProto
                       ) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(the float sign Where(x >= 0, 1, -1), INT8 weights, per-channel alpha) when `conv`
    reads DQ(Q(that sign, 1, 0), 1, 0) and DQ(INT8 in {-1, 0, 1}, alpha, 0, axis 0)."""
    if conv.op_type != 'Conv' or any(a.name == 'group' and a.i != 1 for a in conv.attribute):
        return None
    act_dq, weight_dq = (graph.producer(name, 'DequantizeLinear') for name in conv.input[:2])
    quantize = act_dq and graph.producer(act_dq.input[0], 'QuantizeLinear')
    where = quantize and graph.producer(quantize.input[0], 'Where')
    greater_equal = where and graph.producer(where.input[0], 'GreaterOrEqual')
    if not (weight_dq and greater_equal):
        return None
    if len(conv.input) > 2 and conv.input[2] and graph.constant(conv.input[2]) is None:
        return None
    scalars = [graph.constant(name) for name in (
        greater_equal.input[1], *where.input[1:], *quantize.input[1:], *act_dq.input[1:])]
    if any(v is None or v.size != 1 for v in scalars):
        return None
    if [float(v) for v in scalars] != [0, 1, -1, 1, 0, 1, 0]:
        return None
    weights, alpha, zero_point = (graph.constant(name) for name in weight_dq.input)
    axis = next((a.i for a in weight_dq.attribute if a.name == 'axis'), 1)
    if weights is None or alpha is None or weights.dtype != np.int8 or weights.ndim != 4:
        return None
    if zero_point is None or zero_point.any() or (alpha.size != 1 and axis != 0):
        return None
    if not np.isin(weights, (-1, 0, 1)).all() or alpha.dtype != np.float32:
        return None
    alpha = np.broadcast_to(alpha.reshape(-1), weights.shape[:1]).astype(np.float32)
    return where.output[0], weights, alpha


@dataclass
class _Graph:
    """Producers, constants and pending node replacements of one ONNX graph."""

    model: onnx.ModelProto
    shapes: bool = False
    _producers: dict = field(init=False)
    _initializers: dict = field(init=False)
    _shapes: dict = field(init=False, default_factory=dict)
    _replacements: dict = field(init=False, default_factory=dict)
    _new_initializers: list = field(init=False, default_factory=list)
    _names: Counter = field(init=False, default_factory=Counter)

    def __post_init__(self):
        graph = self.model.graph
        self._producers = {out: node for node in graph.node for out in node.output}
        self._initializers = {init.name: init for init in graph.initializer}
        if self.shapes:
            self._shapes = inferred_shapes(self.model)

    def producer(self, name: str, op_type: str | None = None) -> onnx.NodeProto | None:
        """The node writing `name` (of type `op_type` when given), else None."""
        node = self._producers.get(name)
        return node if node is not None and op_type in (None, node.op_type) else None

    def rank(self, name: str) -> int | None:
        shape = self._shapes.get(name)
        return None if shape is None else len(shape)

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """Inferred dims (None where unknown); None where not even the rank is known."""
        return self._shapes.get(name)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant, through Identity chains; else None."""
        from onnx import numpy_helper

        while name not in self._initializers:
            node = self._producers.get(name)
            if node is None:
                return None
            if node.op_type == 'Identity':
                name = node.input[0]
                continue
            value = next((a for a in node.attribute if a.name == 'value'), None)
            if node.op_type != 'Constant' or value is None:
                return None
            return numpy_helper.to_array(value.t)
        return numpy_helper.to_array(self._initializers[name])

    def fresh(self, base: str) -> str:
        """A prefix for new node and tensor names: 'ort:' (which no exporter writes) + `base`,
        numbered if `base` comes up again."""
        self._names[base] += 1
        count = self._names[base]
        return f'ort:{base}' if count == 1 else f'ort:{base}#{count}'

    def initializer(self, name: str, value: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        self._new_initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def replace(self, node: onnx.NodeProto, nodes: list[onnx.NodeProto]) -> None:
        self._replacements[id(node)] = nodes

    def commit(self) -> None:
        """Splices the replacements in (in place, so the order stays topological), then drops
        nodes and initializers nothing reads any more."""
        graph = self.model.graph
        if not self._replacements:
            return
        nodes = [new for node in graph.node
                 for new in self._replacements.get(id(node), [node])]
        graph.initializer.extend(self._new_initializers)
        live = {out.name for out in graph.output}
        kept = []
        for node in reversed(nodes):
            if any(out in live for out in node.output):
                kept.append(node)
                live.update(name for name in node.input if name)
        del graph.node[:]
        graph.node.extend(reversed(kept))
        initializers = [init for init in graph.initializer if init.name in live]
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        self._replacements.clear()
        self._new_initializers.clear()
