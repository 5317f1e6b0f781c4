"""`bench`: CPU / GPU latency of zoo models per backend and input size, measured side by side.

    bench --model bisenet_r18 bisenet_lite --backend torch onnxruntime --size 360x480 720x1280
    bench --paper-sizes --model bisenet_r18 bisenet_lite     # the lightweight-BiSeNet sizes
    bench --backend torch onnxruntime --size 360x480 --plot bench.png

Median of `--runs` timed forwards after `--warmup` untimed ones, batch 1, eval mode. The
backends of one model and size take turns run by run, so a change in the machine's load (another
job, the CPU clock) hits them alike and their ratios stay meaningful. Backends:
`torch` (eager), `onnxruntime` (the model exported to ONNX at that size, opset 17),
`onnxruntime-int8` (binary models only: the deploy-mode INT8 Q/DQ export), `openvino` and
`openvino-int8` (the same two files on OpenVINO's CPU runtime, in f32 / INT8; where OpenVINO is
installed), `tensorrt` (where TensorRT and a prebuilt engine exist; otherwise the row says
why it is missing) and `onnxruntime-plain` (ORT without the package's blocked-layout rewrite,
`core/backends/onnxruntime_blocked.py`, to measure what it gains). ONNX Runtime runs as the
node runs it, its idle intra-op threads sleeping between ops; `--spin` lets them spin (the
node's `intra_op_spinning: true`), which is much faster with 2+ threads; spinning threads left
behind would take a core from the next backend timed, so with `--spin` each timed call comes
after 50 ms of idle (`--pause-ms`).

After the table come the ratios of each model and size, measured in the same turns, against
the deployment targets: ONNX Runtime <= 0.6 x eager torch, and a binary model's INT8 Q/DQ
graph <= 0.6 x its float ONNX with identical labels (the share of equal arg-max labels of the
two graphs on the bench image is printed beside it). In --json the onnxruntime rows carry
`vs_torch`, the INT8 rows `vs_onnxruntime` and `labels_equal_pct`; likewise the openvino rows
`vs_torch` and the openvino-int8 rows `vs_openvino` and `labels_equal_pct`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

from seg_perception.core.classes import class_set_for
from seg_perception.tools.complexity import parse_size

# Input sizes of the lightweight-BiSeNet paper's FPS table, given there as W x H.
PAPER_SIZES_WH = ((1024, 1024), (1280, 720), (800, 800), (600, 600), (640, 360), (400, 400))
DEFAULT_SIZES = ((360, 480), (512, 1024))
BACKENDS = ('torch', 'onnxruntime', 'onnxruntime-int8', 'openvino', 'openvino-int8', 'tensorrt',
            'onnxruntime-plain')
# (numerator backend, denominator backend, target ratio, JSON key) of the deployment targets;
# a target of None: a ratio printed for information (ORT with its blocked-layout rewrite
# against ORT without it, 'onnxruntime-plain', which only the bench has).
RATIO_TARGETS = (('onnxruntime', 'torch', 0.6, 'vs_torch'),
                 ('onnxruntime-int8', 'onnxruntime', 0.6, 'vs_onnxruntime'),
                 ('openvino', 'torch', 0.6, 'vs_torch'),
                 ('openvino-int8', 'openvino', 0.6, 'vs_openvino'),
                 ('onnxruntime', 'onnxruntime-plain', None, 'vs_onnxruntime_plain'))
# INT8 Q/DQ backend -> the float backend whose labels it must equal.
INT8_OF = {'onnxruntime-int8': 'onnxruntime', 'openvino-int8': 'openvino'}


def time_side_by_side(forwards: dict[str, Callable[[], object]], warmup: int,
                      runs: int, pause: float = 0.0) -> dict[str, float]:
    """Median milliseconds per call of each forward; after `warmup` untimed calls each, the
    forwards take turns for `runs` rounds, `pause` seconds of idle before each timed call
    (so that threads a backend leaves spinning are asleep before the next one is timed)."""
    for forward in forwards.values():
        for _ in range(warmup):
            forward()
    times = {key: [] for key in forwards}
    for _ in range(runs):
        for key, forward in forwards.items():
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            forward()
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(t)) * 1e3 for key, t in times.items()}


def prepare(name: str, backend: str, size: tuple[int, int], *, num_classes: int,
            threads: int, workdir: Path, spinning: bool = False) -> Callable[[], object] | str:
    """A forward of model `name` on `backend` at `size` (random weights, one fixed random
    image), or the reason that case is skipped. `spinning`: ONNX Runtime's intra-op spinning
    (the node's `intra_op_spinning` parameter)."""
    import torch

    from seg_perception.models import build_model
    from seg_perception.models.binarize import (
        binary_layers,
        deploy_model,
        trained_like_statistics,
    )

    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes).eval()
    binary = bool(binary_layers(model))
    if binary:
        # Fresh BN leaves binary sums of exactly 0 at +-1 ulp, binarised by rounding luck:
        # without this the float and INT8 graphs' labels would differ for that reason alone.
        trained_like_statistics(model)
        deploy_model(model)  # what ships: pure sign, precomputed binary weights
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 3, *size)).astype(np.float32)
    if backend == 'torch':
        from seg_perception.core.artifact import Normalization
        from seg_perception.models.normalized import Normalized

        norm = Normalization()
        net = Normalized(model, norm.mean, norm.std).eval()
        x = torch.from_numpy(pixels)

        def run():
            with torch.inference_mode():
                return net(x).numpy()
    elif backend in BACKENDS:  # every other backend runs the exported ONNX
        from seg_perception.core.artifact import load_artifact
        from seg_perception.core.backends import BackendUnavailable, create_backend
        from seg_perception.models.export import export_onnx

        qdq = backend in INT8_OF
        if qdq and not binary:
            return f'{name} has no binary layers'
        path = workdir / f'{name}_{size[0]}x{size[1]}{"_qdq" if qdq else ""}.onnx'
        export_onnx(model, path, model_name=name, class_set=class_set_for(num_classes),
                    num_classes=num_classes, input_size=size, qdq=qdq)
        try:
            if backend == 'onnxruntime-plain':  # ORT's own optimised graph, not rewritten
                from seg_perception.core.backends import onnxruntime_backend

                runner = onnxruntime_backend.load(load_artifact(path), threads=threads,
                                                  spinning=spinning, blocked_layout=False)
            else:
                runner = create_backend(INT8_OF.get(backend, backend), load_artifact(path),
                                        threads=threads, spinning=spinning,
                                        precision='int8' if qdq else 'fp16')
        except BackendUnavailable as err:
            return str(err)

        def run():
            return runner.infer(pixels)
    else:
        raise ValueError(f'unknown backend {backend!r} (expected one of {BACKENDS})')
    return run


GEMM_N = 1536  # matrix size of --peak: large enough for either library's best kernel


def model_flops(name: str, size: tuple[int, int], num_classes: int) -> int:
    """FLOPs (2 x MACs) of the conv and linear layers of zoo model `name` at `size`; binary
    layers count as float, which is what the float graphs compute."""
    from seg_perception.models import build_model
    from seg_perception.models.complexity import count

    return count(build_model(name, num_classes=num_classes), size).flops


def gemm_peak(threads: int, n: int = GEMM_N, runs: int = 10) -> dict[str, float]:
    """GFLOP/s of an n x n x n FP32 matrix product on torch and on ONNX Runtime (median of
    `runs`): about the most either gets from this CPU, so a model's GFLOP/s near it leaves
    no room for a faster schedule of the same arithmetic."""
    import torch

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    forwards = {'torch': lambda: ta @ tb}
    try:
        from onnx import TensorProto, helper, numpy_helper
        import onnxruntime as ort

        graph = helper.make_graph(
            [helper.make_node('MatMul', ['a', 'b'], ['c'])], 'gemm',
            [helper.make_tensor_value_info('a', TensorProto.FLOAT, [n, n])],
            [helper.make_tensor_value_info('c', TensorProto.FLOAT, [n, n])],
            [numpy_helper.from_array(b, 'b')])
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        session = ort.InferenceSession(
            helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              ir_version=8).SerializeToString(),
            options, providers=['CPUExecutionProvider'])
        forwards['onnxruntime'] = lambda: session.run(None, {'a': a})
    except ImportError:
        pass
    medians = time_side_by_side(forwards, warmup=2, runs=runs)
    return {k: 2 * n ** 3 / ms / 1e6 for k, ms in medians.items()}


def _row(name: str, backend: str, size: tuple[int, int], median: float | None,
         skipped: str = '') -> dict:
    row = {'model': name, 'backend': backend, 'size': f'{size[0]}x{size[1]}',
           'median_ms': median, 'fps': None if median is None else 1e3 / median}
    if skipped:
        row['skipped'] = skipped
    return row


def main(argv: list[str] | None = None) -> int:
    from seg_perception.models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', nargs='+', default=None, help='default: every model')
    parser.add_argument('--backend', nargs='+', default=['torch'], choices=BACKENDS)
    parser.add_argument('--size', nargs='+', type=parse_size, default=None, help='H x W')
    parser.add_argument('--paper-sizes', action='store_true',
                        help='the lightweight-BiSeNet paper sizes (1024x1024 ... 400x400)')
    parser.add_argument('--num-classes', type=int, default=19)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0, help='torch / ORT threads, 0 = all')
    parser.add_argument('--spin', action='store_true',
                        help="ONNX Runtime's idle intra-op threads spin between ops (off by "
                             "default, as in the node: its intra_op_spinning parameter)")
    parser.add_argument('--pause-ms', type=float, default=None,
                        help='idle time before each timed call (default 50 with --spin, '
                             'else 0): spinning threads left by one backend would otherwise '
                             'take a core from the next one timed')
    parser.add_argument('--peak', action='store_true',
                        help='also time an FP32 matrix product on torch and ONNX Runtime: '
                             "the GFLOP/s this machine's cores reach, to read the models' "
                             'GFLOP/s column against')
    parser.add_argument('--json', action='store_true', help='print a JSON list')
    parser.add_argument('--csv', type=Path, help='also write a CSV here')
    parser.add_argument('--plot', type=Path, metavar='FILE.png',
                        help='also plot median latency per model, backend and size here')
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    known = list_models()
    names = args.model or known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f'unknown model(s) {", ".join(unknown)} (registered: {", ".join(known)})')
    sizes = list(args.size or [])
    if args.paper_sizes:
        sizes += [(h, w) for w, h in PAPER_SIZES_WH]
    sizes = sizes or list(DEFAULT_SIZES)
    pause = (50.0 if args.spin else 0.0) if args.pause_ms is None else args.pause_ms
    if pause < 0:
        parser.error(f'--pause-ms must be >= 0, got {pause:g}')
    pause /= 1e3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, name in tqdm([(s, n) for s in sizes for n in names], desc='bench',
                               unit='model', file=sys.stderr):
            prepared = {b: prepare(name, b, size, num_classes=args.num_classes,
                                   threads=args.threads, workdir=Path(tmp),
                                   spinning=args.spin)
                        for b in args.backend}
            medians = time_side_by_side({b: p for b, p in prepared.items() if callable(p)},
                                        args.warmup, args.runs, pause=pause)
            case = [_row(name, b, size, medians.get(b), '' if callable(p) else p)
                    for b, p in prepared.items()]
            add_ratios(case, prepared)
            flops = model_flops(name, size, args.num_classes)
            for row in case:
                if row['backend'].startswith('onnxruntime'):
                    row['intra_op_spinning'] = args.spin
                if row['median_ms'] is not None:
                    row['gflop_per_s'] = flops / row['median_ms'] / 1e6
            rows += case
    peak = gemm_peak(args.threads) if args.peak else {}
    for row in rows:
        family = row['backend'].split('-')[0]
        if family in peak:
            row['gemm_gflop_per_s'] = peak[family]
    if args.csv:
        lines = ['model,backend,size,median_ms,fps'] + [
            f'{r["model"]},{r["backend"]},{r["size"]},{_num(r["median_ms"])},{_num(r["fps"])}'
            for r in rows]
        args.csv.write_text('\n'.join(lines) + '\n')
    if args.plot:
        write_plot(rows, args.plot, threads=args.threads, warmup=args.warmup, runs=args.runs)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f'{"model":<14} {"backend":<17} {"size":>10} {"median ms":>10} {"FPS":>8} '
          f'{"GFLOP/s":>8}')
    for r in rows:
        if r['median_ms'] is None:
            print(f'{r["model"]:<14} {r["backend"]:<17} {r["size"]:>10}  skipped: {r["skipped"]}')
            continue
        print(f'{r["model"]:<14} {r["backend"]:<17} {r["size"]:>10} {r["median_ms"]:>10.1f} '
              f'{r["fps"]:>8.2f} {r["gflop_per_s"]:>8.1f}')
    if peak:
        print(f'\nFP32 matrix product here ({GEMM_N}^3, threads: {args.threads or "default"}): '
              + ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peak.items()))
    lines = ratio_lines(rows)
    if lines:
        spin = 'on' if args.spin else 'off (--spin for on)'
        print(f'\nratios (same turns; target in brackets; ONNX Runtime intra-op spinning {spin}):')
        print('\n'.join(lines))
    return 0


def add_ratios(case: list[dict], prepared: dict[str, Callable[[], object] | str]) -> None:
    """Adds the target ratios to the rows of one model and size (in place); for the INT8 row
    also the share of pixels whose arg-max label equals the float ONNX graph's."""
    by_backend = {r['backend']: r for r in case}
    for num, den, _target, key in RATIO_TARGETS:
        a, b = by_backend.get(num), by_backend.get(den)
        if a and b and a['median_ms'] is not None and b['median_ms'] is not None:
            a[key] = a['median_ms'] / b['median_ms']
    for int8_name, float_name in INT8_OF.items():
        int8, float_ = prepared.get(int8_name), prepared.get(float_name)
        if callable(int8) and callable(float_):
            equal = np.argmax(int8(), axis=1) == np.argmax(float_(), axis=1)
            by_backend[int8_name]['labels_equal_pct'] = 100.0 * float(equal.mean())


def ratio_lines(rows: list[dict]) -> list[str]:
    """'model size: A / B = r (<= t: met|MISSED)' for every ratio the rows carry."""
    out = []
    for r in rows:
        for num, den, target, key in RATIO_TARGETS:
            if r['backend'] != num or key not in r:
                continue
            line = f'  {r["model"]:<14} {r["size"]:>10}  {num} / {den} = {r[key]:.2f}'
            if target is not None:
                line += f' (<= {target}: {"met" if r[key] <= target else "MISSED"})'
            if 'labels_equal_pct' in r:
                line += f', labels equal on {r["labels_equal_pct"]:.3f} % of pixels'
            out.append(line)
    return out


def _num(value: float | None) -> str:
    return '' if value is None else f'{value:.3f}'


def machine_description() -> str:
    """'<CPU model>, <n> cores' for plot titles (the CPU model from /proc/cpuinfo on Linux)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} cores'


def write_plot(rows: list[dict], path: Path, *, threads: int, warmup: int, runs: int) -> None:
    """Grouped bars of median latency: one panel per input size, a group of bars per model, one
    bar per backend (log scale: the zoo spans 30 ms to seconds). Skipped rows read 'n/a'."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(r['size'] for r in rows))
    models = list(dict.fromkeys(r['model'] for r in rows))
    backends = list(dict.fromkeys(r['backend'] for r in rows))
    by_case = {(r['size'], r['model'], r['backend']): r for r in rows}
    timed = [r['median_ms'] for r in rows if r['median_ms'] is not None]
    bottom, top = (min(timed) / 2, max(timed) * 8) if timed else (1.0, 10.0)
    width = 0.8 / len(backends)
    fig, axes = plt.subplots(len(sizes), 1, squeeze=False,
                             figsize=(max(6.0, 0.5 * len(models) * len(backends) + 2.5),
                                      1.2 + 3.0 * len(sizes)))
    for ax, size in zip(axes[:, 0], sizes, strict=True):
        for i, backend in enumerate(backends):
            xs = [m + (i - (len(backends) - 1) / 2) * width for m in range(len(models))]
            cases = [by_case.get((size, model, backend)) for model in models]
            values = [c['median_ms'] if c and c['median_ms'] is not None else float('nan')
                      for c in cases]
            bars = ax.bar(xs, values, width, label=backend, color=f'C{i}')
            ax.bar_label(bars, labels=['' if v != v else f'{v:.0f}' for v in values],
                         fontsize=7, padding=2)
            for x, case in zip(xs, cases, strict=True):
                if case is not None and case['median_ms'] is None:  # skipped: say so
                    ax.text(x, bottom * 1.15, 'n/a', ha='center', fontsize=7, color=f'C{i}')
        ax.set_xticks(range(len(models)), models)
        ax.set_xlim(-0.5, len(models) - 0.5)
        ax.set_yscale('log')
        ax.set_ylim(bottom, top)  # headroom above the tallest bar for its label, the legend
        ax.set_ylabel('median latency (ms)')
        ax.set_title(f'input {size} (H x W)', fontsize=10)
        ax.grid(axis='y', alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncols=len(backends), loc='upper right')
    fig.suptitle(f'bench: batch 1, median of {runs} runs after {warmup} warm-up\n'
                 f'{machine_description()}; threads: {threads or "library default"}',
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    raise SystemExit(main())
