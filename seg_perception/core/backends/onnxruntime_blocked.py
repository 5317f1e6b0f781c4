"""Keeps tensors in ONNX Runtime's blocked NCHWc layout across the ops ORT leaves outside it.

ORT's NchwcTransformer (x86 CPUs) runs convs, pools, BN, same-shape Add / Mul and Concat in
a blocked layout (channels in groups of 16 with AVX-512, 8 with AVX2) and puts a
ReorderOutput before, and a ReorderInput after, every other op. Many of those others do not
care about the layout at all: an elementwise op (JetSeg's REU, Clip -> Exp -> Mul) computes
the same numbers on the blocked buffer as on the plain one. Each pair of reorders is two
full passes over the tensor; in JetSeg's decoder they were 10 of 52 ms.

`keep_blocked` rewrites the graph ORT has already optimised (read back from
`SessionOptions.optimized_model_filepath`; the backend then loads the result with
optimisations off, so that nothing is transformed twice, and checks it on a probe image
against ORT's own). It finds "islands" of such ops whose inputs exist in blocked form, moves
them onto the blocked tensors and drops the reorders around them, where that removes more
reordering than it adds, counted in elements, less the extra work of ops on the padding
channels when C is not a whole number of blocks. Measured at 360x480, one thread, against
ORT's own graph: JetSeg 51 -> 40 ms, FBSNet 234 -> 219, BiSeNet-R18 and BiSegUNet within noise.

Ops that may move, and why each is exact:
- unary elementwise ops with scalar constant operands, binary ones whose tensor operands all
  have the output's shape (no broadcasting: a [1, C, 1, 1] operand would meet the wrong
  channels in the blocked buffer), and Sum: the same kernel on the same values, element for
  element. The padding channels of a block hold finite values (what the op makes of a conv's
  zero padding), and every NCHWc consumer reads them with zero weights or drops them, so
  only ops that keep finite values finite are listed.
- Concat on channels of tensors whose channel counts are whole blocks, batch 1: the blocked
  buffer of the result is then the buffers of the parts one after another.
- Resize by integer factors (linear or nearest) becomes ORT's own NCHWc Upsample, which the
  transformer only uses where the input is already blocked.
- Channel attention (squeeze-and-excite, ECA, BiSeNet's ARM): ReduceMean over H, W becomes
  NCHWc GlobalAveragePool, and x * s with s of shape [1, C, 1, 1] a depthwise 1 x 1 NCHWc
  Conv whose filter is s. Both are ORT's own kernels; the pooled sums are added in another
  order (1e-7 relative), the Mul is one product per element either way.
An operand that exists only in plain form may get a ReorderInput of its own (counted as a
cost), so that, for example, a small upsampled tensor can join a large blocked one.

Written here because ORT has no option for it: its transformer decides per op, without
looking at the ops around.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from math import prod

import numpy as np

NCHWC = 'com.microsoft.nchwc'

# Map finite to finite (so the padding lanes stay harmless) and need no layout.
_UNARY = frozenset({'Abs', 'Celu', 'Clip', 'Elu', 'Erf', 'Exp', 'HardSigmoid', 'HardSwish',
                    'Identity', 'LeakyRelu', 'Neg', 'Relu', 'Selu', 'Sigmoid', 'Softplus',
                    'Tanh'})
_BINARY = frozenset({'Add', 'Max', 'Min', 'Mul', 'Sub', 'Sum'})
# (mode, coordinate_transformation_mode) pairs ORT's NCHWc Upsample computes like Resize
# (each one tested; it refuses 'pytorch_half_pixel').
_UPSAMPLE_MODES = frozenset({('linear', 'half_pixel'), ('linear', 'asymmetric'),
                             ('linear', 'align_corners'), ('nearest', 'asymmetric')})


@dataclass(frozen=True)
class _Plan:
    """How one node moves onto blocked tensors."""
    node: object
    blocked_inputs: tuple[str, ...]    # plain names of the tensor inputs read blocked
    plain_inputs: tuple[str, ...]      # of those, the ones that need a new ReorderInput
    channels: int                      # real channels of the output
    shape: tuple[int, ...]             # plain NCHW shape of the output
    upsample: tuple[int, int] | None = None  # integer H, W factors when a Resize
    kind: str = 'same'                 # same op | upsample | pool | scale (see _moved)
    plain_shape: tuple[int, ...] = ()  # a pool's output shape in the original graph


def keep_blocked(model, shapes: dict[str, tuple], block: int) -> int:
    """Rewrites ORT's NCHWc-optimised `model` in place as the module docstring says; returns
    the number of ops moved onto blocked tensors. `shapes`: plain tensor name -> NCHW shape,
    from shape inference on the model before ORT (ORT keeps the names of the tensors it does
    not transform)."""
    from onnx import helper

    graph = model.graph
    nodes = _topological(graph)
    consumers = defaultdict(list)
    for node in nodes:
        for name in node.input:
            if name:
                consumers[name].append(node)
    producer = {out: node for node in nodes for out in node.output}
    inits = {init.name: init for init in graph.initializer}
    outputs = {out.name for out in graph.output}

    def scalar(name: str) -> bool:
        return name == '' or (name in inits and prod(inits[name].dims) == 1)

    def attrs(node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # Plain tensor -> the blocked tensor it was reordered from (ReorderOutput outputs).
    reordered = {}
    for node in nodes:
        if node.domain == NCHWC and node.op_type == 'ReorderOutput':
            a = attrs(node)
            shape = shapes.get(node.output[0])
            if a.get('channels_last', 0) == 0 and _known4(shape) and shape[1] == a['channels']:
                reordered[node.output[0]] = node.input[0]

    banned: set[int] = set()
    while True:
        plans = _plan(nodes, reordered, shapes, banned, scalar, attrs, inits, outputs, block)
        gains = _island_gains(plans, reordered, shapes, consumers, producer, outputs,
                              block)
        losing = {key for key, gain in gains.items() if gain <= 0}
        if not losing:
            break
        banned.update(losing)
    if not plans:
        return 0

    # Blocked name of each plain tensor that an island reads or writes.
    blocked = dict(reordered)
    new_ri = {}
    for plan in plans.values():
        blocked[plan.node.output[0]] = f'{plan.node.output[0]}/blocked'
        for name in plan.plain_inputs:
            new_ri.setdefault(name, f'{name}/blocked')
    blocked.update(new_ri)
    dropped_ro = {id(node) for node in nodes if node.domain == NCHWC
                  and node.op_type == 'ReorderOutput' and node.output[0] in reordered
                  and node.output[0] not in outputs
                  and all(id(c) in plans for c in consumers[node.output[0]])}
    renamed = {}   # output of a dropped ReorderInput -> blocked tensor that replaces it
    rebuilt = []
    for node in nodes:
        if id(node) in dropped_ro:
            continue
        if (node.domain == NCHWC and node.op_type == 'ReorderInput'
                and id(producer.get(node.input[0])) in plans
                and attrs(node).get('channels_last', 0) == 0):
            renamed[node.output[0]] = blocked[node.input[0]]
            continue
        plan = plans.get(id(node))
        if plan is None:
            rebuilt.append(node)
            continue
        for name in plan.plain_inputs:
            if name in new_ri:
                rebuilt.append(helper.make_node('ReorderInput', [name], [new_ri.pop(name)],
                                                domain=NCHWC, channels_last=0,
                                                name=f'{name}/reorder_input'))
        out = node.output[0]
        rebuilt.extend(_moved(plan, blocked, attrs(node), block, graph))
        if out in outputs or any(id(c) not in plans and not _is_reorder_input(c)
                                 for c in consumers[out]):
            flat = plan.kind == 'pool' and plan.plain_shape != plan.shape  # keepdims=0
            plain = f'{out}/plain' if flat else out
            rebuilt.append(helper.make_node('ReorderOutput', [blocked[out]], [plain],
                                            domain=NCHWC, channels=plan.channels,
                                            channels_last=0, name=f'{out}/reorder_output'))
            if flat:   # back to the ReduceMean's own shape
                rebuilt.append(helper.make_node(
                    'Reshape', [plain, _constant(graph, f'{out}/shape', plan.plain_shape)],
                    [out], name=f'{out}/reshape'))
    for node in rebuilt:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(rebuilt)
    del graph.value_info[:]  # blocked tensors have no plain shape; ORT infers its own
    return len(plans)


def _moved(plan: _Plan, blocked: dict, a: dict, block: int, graph) -> list:
    """The node(s) that compute `plan`'s op on blocked tensors."""
    from onnx import helper

    node, out = plan.node, blocked[plan.node.output[0]]
    if plan.kind == 'upsample':
        return [helper.make_node(
            'Upsample', [blocked[node.input[0]]], [out], domain=NCHWC, name=f'{node.name}/nchwc',
            mode=a.get('mode', b'nearest').decode(),
            coordinate_transformation_mode=a.get('coordinate_transformation_mode',
                                                 b'half_pixel').decode(),
            scales=[1, 1, *plan.upsample])]
    if plan.kind == 'pool':
        return [helper.make_node('GlobalAveragePool', [blocked[node.input[0]]], [out],
                                 domain=NCHWC, name=f'{node.name}/nchwc')]
    if plan.kind == 'scale':
        x, s = plan.blocked_inputs
        padded = -(-plan.channels // block) * block
        shape = _constant(graph, f'{node.name}/filter_shape', (padded, 1, 1, 1))
        return [helper.make_node('Reshape', [blocked[s], shape], [f'{out}/filter'],
                                 name=f'{node.name}/filter'),
                helper.make_node('Conv', [blocked[x], f'{out}/filter'], [out], domain=NCHWC,
                                 name=f'{node.name}/nchwc', group=padded, kernel_shape=[1, 1],
                                 auto_pad='NOTSET')]
    moved = type(node)()
    moved.CopyFrom(node)
    moved.input[:] = [blocked[name] if name in plan.blocked_inputs else name
                      for name in node.input]
    moved.output[0] = out
    return [moved]


def _constant(graph, name: str, values) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def _plan(nodes, reordered, shapes, banned, scalar, attrs, inits, outputs, block) -> dict:
    """Which nodes could move (id -> _Plan), in topological order, given the banned ones."""
    from onnx import numpy_helper

    plans = {}
    available = dict.fromkeys(reordered)   # plain names that exist blocked (or will)
    channels = {name: shapes[name][1] for name in reordered}
    for node in nodes:
        if node.domain != '' or id(node) in banned or len(node.output) != 1 \
                or node.output[0] in outputs:
            continue
        out_shape = shapes.get(node.output[0])
        tensors = [name for name in node.input if not scalar(name)]
        op = node.op_type
        plan = None
        if op == 'ReduceMean' and node.input[0] in available and out_shape is not None:
            plan = _pool_plan(node, attrs(node), shapes, channels[node.input[0]], out_shape)
            if plan is not None and plan.shape == out_shape:   # keepdims: readable blocked
                available[node.output[0]] = None
                channels[node.output[0]] = plan.channels
            if plan is not None:
                plans[id(node)] = plan
            continue
        if not _known4(out_shape):
            continue
        if op in _UNARY:
            if len(tensors) == 1 and tensors[0] == node.input[0] and tensors[0] in available \
                    and shapes.get(tensors[0]) == out_shape:
                plan = _Plan(node, (tensors[0],), (), channels[tensors[0]], out_shape)
        elif op in _BINARY:
            if tensors and all(shapes.get(name) == out_shape for name in tensors) \
                    and any(name in available for name in tensors):
                plain = tuple(name for name in tensors if name not in available)
                plan = _Plan(node, tuple(tensors), plain, out_shape[1], out_shape)
            elif op == 'Mul' and len(tensors) == len(node.input) == 2:
                plan = _scale_plan(node, tensors, shapes, available, out_shape)
        elif op == 'Concat':
            if attrs(node).get('axis') in (1, -3) and out_shape[0] == 1 and tensors \
                    and len(tensors) == len(node.input) \
                    and all(name in available and channels[name] % block == 0
                            for name in tensors):
                plan = _Plan(node, tuple(tensors), (), out_shape[1], out_shape)
        elif op == 'Resize' and node.input[0] in available:
            a = attrs(node)
            mode = (a.get('mode', b'nearest').decode(),
                    a.get('coordinate_transformation_mode', b'half_pixel').decode())
            in_shape = shapes.get(node.input[0])
            factors = _integer_factors(in_shape, out_shape)
            nearest_ok = mode[0] != 'nearest' or a.get('nearest_mode', b'round_prefer_floor') \
                == b'floor'
            roi_free = len(node.input) < 2 or node.input[1] == '' or (
                node.input[1] in inits and numpy_helper.to_array(inits[node.input[1]]).size == 0)
            if mode in _UPSAMPLE_MODES and factors and nearest_ok and roi_free \
                    and not a.get('antialias', 0):
                plan = _Plan(node, (node.input[0],), (), channels[node.input[0]], out_shape,
                             upsample=factors, kind='upsample')
        if plan is not None:
            plans[id(node)] = plan
            available[node.output[0]] = None
            channels[node.output[0]] = plan.channels
            for name in plan.plain_inputs:
                channels.setdefault(name, shapes[name][1])
    return plans


def _pool_plan(node, a: dict, shapes, channels: int, out_shape) -> _Plan | None:
    """ReduceMean over H, W of a blocked tensor: ORT's NCHWc GlobalAveragePool, whose
    [1, C, 1, 1] output is in plain channel order (a block of 1 x 1 pixels is just C
    numbers) plus padding."""
    in_shape = shapes.get(node.input[0])
    axes = a.get('axes')
    if not _known4(in_shape) or axes is None or len(node.input) > 1 \
            or sorted(x % 4 for x in axes) != [2, 3] or a.get('keepdims', 1) not in (0, 1) \
            or prod(out_shape) != in_shape[1] or in_shape[0] != 1:
        return None
    pooled = (1, in_shape[1], 1, 1)
    return _Plan(node, (node.input[0],), (), channels, pooled, kind='pool',
                 plain_shape=tuple(out_shape))


def _scale_plan(node, tensors, shapes, available, out_shape) -> _Plan | None:
    """x * s with s of shape [1, C, 1, 1] (channel attention), x blocked: a depthwise 1 x 1
    NCHWc Conv whose filter is s itself ([C, 1, 1, 1] in blocked order is plain order). ORT's
    NCHWc Conv reads its filter at run time, so a computed one works (bit for bit the Mul:
    one product per element)."""
    for x, s in (tensors, tensors[::-1]):
        if x in available and shapes.get(x) == out_shape \
                and shapes.get(s) == (1, out_shape[1], 1, 1):
            plain = () if s in available else (s,)
            return _Plan(node, (x, s), plain, out_shape[1], out_shape, kind='scale')
    return None


def _island_gains(plans, reordered, shapes, consumers, producer, outputs, block) -> dict:
    """id of each planned node -> elements of reordering its island saves (negative: adds),
    less the extra work of its ops on padding channels (a reorder and an elementwise op each
    read and write their tensor once, so elements are the unit of both). Planned nodes are
    in one island when one reads the other's output or both read the same tensor."""
    parent = {key: key for key in plans}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    readers = defaultdict(list)
    for key, plan in plans.items():
        for name in plan.blocked_inputs:
            readers[name].append(key)
            source = producer.get(name)
            if source is not None and id(source) in plans:
                parent[root(id(source))] = root(key)
    for keys in readers.values():
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    gain = defaultdict(int)
    for name, keys in readers.items():
        size = prod(shapes[name])
        if name in reordered:   # its ReorderOutput goes if nothing else reads the plain tensor
            if name not in outputs and all(id(c) in plans for c in consumers[name]):
                gain[root(keys[0])] += size
        elif id(producer.get(name)) not in plans:   # a plain operand: a new ReorderInput
            gain[root(keys[0])] -= size
    for key, plan in plans.items():
        out = plan.node.output[0]
        size = prod(plan.shape)
        # Blocked, the op also computes the padding channels: (padded - C) / C more work.
        work = prod(shapes[plan.blocked_inputs[0]]) if plan.kind == 'pool' else size
        padded = -(-plan.channels // block) * block
        gain[root(key)] -= work * (padded - plan.channels) // plan.channels
        gain[root(key)] += size * sum(_is_reorder_input(c) for c in consumers[out])
        if out in outputs or any(id(c) not in plans and not _is_reorder_input(c)
                                 for c in consumers[out]):
            gain[root(key)] -= size   # a new ReorderOutput for the plain readers
    return {key: gain[root(key)] for key in plans}


def _is_reorder_input(node) -> bool:
    return node.domain == NCHWC and node.op_type == 'ReorderInput' and not any(
        a.name == 'channels_last' and a.i for a in node.attribute)


def _known4(shape) -> bool:
    return shape is not None and len(shape) == 4 and all(isinstance(d, int) and d > 0
                                                         for d in shape)


def _integer_factors(in_shape, out_shape) -> tuple[int, int] | None:
    """(fh, fw) when out = in x integer factors on H, W and the same on N, C; else None."""
    if not (_known4(in_shape) and _known4(out_shape)) or in_shape[:2] != out_shape[:2]:
        return None
    factors = tuple(o // i for i, o in zip(in_shape[2:], out_shape[2:], strict=True))
    if any(f < 1 or i * f != o for f, i, o in zip(factors, in_shape[2:], out_shape[2:],
                                                  strict=True)):
        return None
    return factors if factors != (1, 1) else None


def _topological(graph) -> list:
    """The graph's nodes in an order where each comes after the producers of its inputs
    (ORT writes its optimised graph in node-index order, which fusions can leave unsorted)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {''}
    pending = list(graph.node)
    order = []
    waiting = defaultdict(list)
    missing = {}
    for node in pending:
        need = {name for name in node.input if name not in ready}
        missing[id(node)] = len(need)
        for name in need:
            waiting[name].append(node)
    queue = [node for node in pending if missing[id(node)] == 0]
    while queue:
        node = queue.pop(0)
        order.append(node)
        for out in node.output:
            for user in waiting.pop(out, []):
                missing[id(user)] -= 1
                if missing[id(user)] == 0:
                    queue.append(user)
    if len(order) != len(pending):
        raise ValueError('graph has a cycle or reads a tensor nothing produces')
    return order

