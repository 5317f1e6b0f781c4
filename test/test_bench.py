"""The `bench` command's interface (timings themselves are read from its output, not tested)."""

import json
import time

import cv2

from seg_perception.tools.bench import PAPER_SIZES_WH, main, time_side_by_side


def test_bench_json_rows_per_model_backend_size(capsys, tmp_path):
    csv = tmp_path / 'bench.csv'
    assert main(['--model', 'fcn_tiny', '--backend', 'torch', 'onnxruntime', '--size', '64x96',
                 '--warmup', '0', '--runs', '1', '--num-classes', '11', '--json',
                 '--csv', str(csv)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r['model'], r['backend'], r['size']) for r in rows] == [
        ('fcn_tiny', 'torch', '64x96'), ('fcn_tiny', 'onnxruntime', '64x96')]
    for row in rows:
        assert row['median_ms'] > 0 and abs(row['fps'] - 1e3 / row['median_ms']) < 1e-6
    assert csv.read_text().splitlines()[0] == 'model,backend,size,median_ms,fps'


def test_ratios_against_the_targets_in_json_and_table(capsys):
    args = ['--model', 'bisegunet', '--backend', 'torch', 'onnxruntime', 'onnxruntime-int8',
            '--size', '64x96', '--warmup', '0', '--runs', '1', '--num-classes', '11']
    assert main(args + ['--json']) == 0
    torch_row, ort, int8 = json.loads(capsys.readouterr().out)
    assert 'vs_torch' not in torch_row
    assert abs(ort['vs_torch'] - ort['median_ms'] / torch_row['median_ms']) < 1e-9
    assert abs(int8['vs_onnxruntime'] - int8['median_ms'] / ort['median_ms']) < 1e-9
    # The exact INT8 graph of a binary network labels (almost) every pixel as the float one.
    assert int8['labels_equal_pct'] >= 99.0
    assert main(args) == 0
    table = capsys.readouterr().out
    assert ('ratios (same turns; target in brackets; ONNX Runtime intra-op spinning off '
            '(--spin for on)):') in table
    assert 'onnxruntime / torch = ' in table and 'onnxruntime-int8 / onnxruntime = ' in table
    assert '(<= 0.6: ' in table and 'labels equal on ' in table


def test_paper_sizes_are_the_lightweight_bisenet_table():
    assert PAPER_SIZES_WH == ((1024, 1024), (1280, 720), (800, 800), (600, 600), (640, 360),
                              (400, 400))


def test_int8_and_tensorrt_rows_say_why_they_are_missing(capsys):
    assert main(['--model', 'fcn_tiny', '--backend', 'onnxruntime-int8', 'tensorrt',
                 '--size', '64x96', '--warmup', '0', '--runs', '1', '--num-classes', '11',
                 '--json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]['median_ms'] is None and 'no binary layers' in rows[0]['skipped']
    assert rows[1]['median_ms'] is None and 'tensorrt' in rows[1]['skipped']


def test_int8_row_for_a_binary_model(capsys):
    assert main(['--model', 'bisegunet', '--backend', 'onnxruntime-int8', '--size', '64x96',
                 '--warmup', '0', '--runs', '1', '--num-classes', '11', '--json']) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row['backend'] == 'onnxruntime-int8' and row['median_ms'] > 0


def test_plot_is_a_png_with_a_panel_per_size(capsys, tmp_path):
    png = tmp_path / 'plots' / 'bench.png'
    # One timed and one skipped row per size (fcn_tiny has no INT8 form): bars and 'n/a'.
    assert main(['--model', 'fcn_tiny', '--backend', 'torch', 'onnxruntime-int8',
                 '--size', '32x48', '48x64', '--warmup', '0', '--runs', '1',
                 '--num-classes', '11', '--json', '--plot', str(png)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r['median_ms'] is None for r in rows] == [False, True, False, True]
    image = cv2.imread(str(png))
    assert image is not None
    height, width = image.shape[:2]
    # 110 dpi: at least 6 x (1.2 + 3.0 per panel) inches, two panels stacked.
    assert width >= 6 * 110 - 2 and height >= (1.2 + 2 * 3.0) * 110 - 2
    assert image.std() > 10  # not a blank canvas


def test_backends_take_turns_after_their_warm_up():
    calls = []
    medians = time_side_by_side({'a': lambda: calls.append('a'),
                                 'b': lambda: calls.append('b')}, warmup=2, runs=3)
    assert calls == ['a', 'a', 'b', 'b'] + ['a', 'b'] * 3
    assert set(medians) == {'a', 'b'} and all(m >= 0 for m in medians.values())


def test_spin_reaches_the_onnxruntime_rows_and_the_table(capsys):
    args = ['--model', 'fcn_tiny', '--backend', 'torch', 'onnxruntime', '--size', '64x96',
            '--warmup', '0', '--runs', '1', '--num-classes', '11', '--spin']
    assert main(args + ['--json']) == 0
    torch_row, ort = json.loads(capsys.readouterr().out)
    assert ort['intra_op_spinning'] is True and 'intra_op_spinning' not in torch_row
    assert main(args + ['--pause-ms', '0']) == 0
    assert 'ONNX Runtime intra-op spinning on):' in capsys.readouterr().out


def test_the_pause_before_each_timed_call_is_not_timed():
    start = time.perf_counter()
    medians = time_side_by_side({'a': lambda: None, 'b': lambda: None}, warmup=0, runs=3,
                                pause=0.02)
    assert time.perf_counter() - start >= 6 * 0.02  # a pause before each of the 6 calls
    assert all(m < 10 for m in medians.values())  # ms: the pauses are outside the timing


def test_plain_onnxruntime_row_measures_the_blocked_layout_rewrite(capsys):
    """`onnxruntime-plain`: ORT without the blocked-layout rewrite, with an informational
    ratio (no target) on the onnxruntime row."""
    args = ['--model', 'jetseg', '--backend', 'onnxruntime', 'onnxruntime-plain', '--size',
            '64x96', '--warmup', '0', '--runs', '1', '--num-classes', '11']
    assert main(args + ['--json']) == 0
    ort, plain = json.loads(capsys.readouterr().out)
    assert plain['backend'] == 'onnxruntime-plain' and plain['median_ms'] > 0
    assert abs(ort['vs_onnxruntime_plain'] - ort['median_ms'] / plain['median_ms']) < 1e-9
    assert main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if 'onnxruntime / onnxruntime-plain = ' in x)
    assert '<=' not in line   # information, not a target


def test_gflops_per_row_and_the_matrix_product_peak(capsys):
    """Every timed row carries the model's conv / linear FLOPs per second; --peak adds the
    FP32 matrix-product rate of each backend's library (to read the first against)."""
    from seg_perception.tools.bench import model_flops

    args = ['--model', 'fcn_tiny', '--backend', 'torch', 'onnxruntime', '--size', '64x96',
            '--warmup', '0', '--runs', '1', '--num-classes', '11', '--peak']
    assert main(args + ['--json']) == 0
    rows = json.loads(capsys.readouterr().out)
    flops = model_flops('fcn_tiny', (64, 96), 11)
    assert flops > 0
    for row in rows:
        assert abs(row['gflop_per_s'] - flops / row['median_ms'] / 1e6) < 1e-6
        assert 10 < row['gemm_gflop_per_s'] < 1e5   # a real measurement, in GFLOP/s
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'GFLOP/s' in out.splitlines()[0]
    assert 'FP32 matrix product here (1536^3, threads: default): torch ' in out
